@auth
Feature: Login
  People sign in with a user name and a password. This feature shows what
  Anvil records for behave: a Background, a Scenario Outline with Examples,
  a Rule, a data table, a doc string, tags, one failing step and one
  undefined step (both on purpose).

  Background:
    Given these accounts exist:
      | username | password | locked |
      | alice    | s3cret   | no     |
      | bob      | hunter2  | yes    |
    And the login page is open

  @smoke
  Scenario: Alice signs in
    When "alice" signs in with password "s3cret"
    Then the dashboard greets "alice"
    But no error is shown

  @smoke
  Scenario Outline: Wrong credentials are refused
    When "<username>" signs in with password "<password>"
    Then the error "<message>" is shown

    Examples: unknown name or wrong password
      | username | password | message        |
      | alice    | nope     | wrong password |
      | mallory  | s3cret   | unknown user   |

  @slow
  Scenario: The welcome mail is sent after signing in
    When "alice" signs in with password "s3cret"
    Then a mail to "alice" reads:
      """
      Hello alice,
      welcome back to Anvil.
      """

  Scenario: The dashboard shows the wrong name (fails on purpose)
    When "alice" signs in with password "s3cret"
    Then the dashboard greets "bob"
    And no error is shown

  Scenario: Password reset by SMS (a step nobody implemented yet)
    When "alice" asks for a password reset by SMS
    Then no error is shown

  Rule: Locked accounts cannot sign in

    @smoke
    Scenario: Bob is locked out
      When "bob" signs in with password "hunter2"
      Then the error "account locked" is shown

    @slow
    Scenario: An administrator unlocks Bob
      Given an administrator unlocks "bob"
      When "bob" signs in with password "hunter2"
      Then the dashboard greets "bob"
