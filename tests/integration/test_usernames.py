"""User names as the backend sees them.

Dovecot lower-cases user names by default (auth_username_format = %Lu), so
"BOB" is bob at the backend.  The second-factor rule must apply to every
spelling that reaches the same account, or "BOB" + the account password
would walk around it.  Names with the master-user separator must never
reach the backend either: "bob*mfagate" means "bob, via master user
mfagate" to Dovecot.
"""
import pytest

from helpers import app_password, logged_in, login_refusal, totp_enroll
from mfagate import GENERIC_REFUSAL


@pytest.fixture(scope="module")
def bob_totp(mfagate):
    return totp_enroll(mfagate, "bob")


@pytest.mark.parametrize("name", ["BOB", "Bob", "bOb"])
def test_other_case_of_a_factor_user_is_refused(mfagate, tls_ctx, bob_totp, name):
    assert login_refusal(mfagate, tls_ctx, name, "bobpw") == GENERIC_REFUSAL


def test_app_password_works_whatever_the_case(mfagate, tls_ctx, bob_totp):
    _, pw = app_password(mfagate, "bob", "CaseTest")
    c = logged_in(mfagate, tls_ctx, "BOB", pw)
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_master_separator_in_name_is_refused(mfagate, tls_ctx, bob_totp, dovecot):
    # Even with the right master password, a client may not log in as
    # "bob*mfagate": the proxy never lets a name with '*' through.
    assert login_refusal(mfagate, tls_ctx, "bob*" + dovecot.master_user,
                         dovecot.master_password) == GENERIC_REFUSAL
    assert login_refusal(mfagate, tls_ctx, "alice*" + dovecot.master_user,
                         dovecot.master_password) == GENERIC_REFUSAL
