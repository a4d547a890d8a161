Feature: Shopping cart
  A small feature where every scenario passes.

  Background:
    Given an empty cart

  @smoke
  Scenario: Adding items sums their prices
    When I add these items:
      | item   | price |
      | hammer | 12.50 |
      | nails  | 3.25  |
    Then the cart total is 15.75

  Scenario Outline: Discount codes
    Given the cart holds goods worth <amount>
    When I apply the code "<code>"
    Then the cart total is <total>

    Examples:
      | amount | code   | total |
      | 100.00 | TEN    | 90.00 |
      | 100.00 | NOTHING | 100.00 |
