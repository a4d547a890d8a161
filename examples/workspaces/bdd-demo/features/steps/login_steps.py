"""Step definitions of features/login.feature."""

from behave import given, then, when


@given("these accounts exist:")
def accounts_exist(context):
    for row in context.table:
        context.app.accounts[row["username"]] = (row["password"], row["locked"] == "yes")


@given("the login page is open")
def login_page_open(context):
    context.app.page = "login"


@given('an administrator unlocks "{username}"')
def admin_unlocks(context, username):
    password, _ = context.app.accounts[username]
    context.app.accounts[username] = (password, False)


@when('"{username}" signs in with password "{password}"')
def sign_in(context, username, password):
    context.app.sign_in(username, password)


@then('the dashboard greets "{username}"')
def dashboard_greets(context, username):
    assert context.app.page == "dashboard", f"expected the dashboard, the {context.app.page} page is shown"
    assert context.app.user == username, f"the dashboard greets {context.app.user!r}, not {username!r}"


@then("no error is shown")
def no_error(context):
    assert context.app.error is None, f"error shown: {context.app.error}"


@then('the error "{message}" is shown')
def error_shown(context, message):
    assert context.app.error == message, f"error is {context.app.error!r}, expected {message!r}"


@then('a mail to "{username}" reads:')
def mail_reads(context, username):
    assert context.app.mails.get(username) == context.text, f"mail: {context.app.mails.get(username)!r}"
