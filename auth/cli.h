/*
 * cli.h - the operator's commands on the store (DESIGN.md 8): app-password,
 * totp, factor, audit.  core/main.c parses -c FILE, loads the config and
 * hands the rest of argv here.
 */
#ifndef MFA_CLI_H
#define MFA_CLI_H

#include "conf/config.h"

/*
 * argv[0] is the subcommand ("app-password", "totp", "factor", "audit"),
 * the rest its arguments.  Opens the state (keys, database, migrations)
 * itself.  Returns the exit code: 0 ok, 1 error (a message on stderr),
 * 2 usage.
 */
int auth_cli_main(const struct config *cfg, int argc, char **argv);

#endif
