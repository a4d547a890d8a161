"""The tiny system under test: accounts, a login page, a mailbox and a cart."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class App:
    accounts: dict[str, tuple[str, bool]] = field(default_factory=dict)
    page: str | None = None
    user: str | None = None
    error: str | None = None
    mails: dict[str, str] = field(default_factory=dict)
    cart: list[float] = field(default_factory=list)
    discount: float = 0.0

    def sign_in(self, username: str, password: str) -> None:
        self.user = self.error = None
        if username not in self.accounts:
            self.error = "unknown user"
            return
        secret, locked = self.accounts[username]
        if locked:
            self.error = "account locked"
        elif password != secret:
            self.error = "wrong password"
        else:
            self.user = username
            self.page = "dashboard"
            self.mails[username] = f"Hello {username},\nwelcome back to Anvil."

    @property
    def total(self) -> float:
        return round(sum(self.cart) * (1 - self.discount), 2)
