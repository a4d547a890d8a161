"""Step definitions of features/cart.feature."""

from behave import given, then, when


@given("an empty cart")
def empty_cart(context):
    context.app.cart.clear()


@given("the cart holds goods worth {amount:f}")
def cart_holds(context, amount):
    context.app.cart.append(amount)


@when("I add these items:")
def add_items(context):
    for row in context.table:
        context.app.cart.append(float(row["price"]))


@when('I apply the code "{code}"')
def apply_code(context, code):
    context.app.discount = 0.10 if code == "TEN" else 0.0


@then("the cart total is {total:f}")
def cart_total(context, total):
    assert context.app.total == total, f"total is {context.app.total}, expected {total}"
