"""Request and response bodies, apart from the ORM models."""

from __future__ import annotations

import functools
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from anvil.domain.enums import Priority
from anvil.domain.file_maps import check_file_map
from anvil.domain.gates import GATE_HELP, GateRules
from anvil.domain.policy import valid_cron
from anvil.domain.runners import CaseKind
from anvil.domain.specs.base import Strict
from db.secrets import MAX_VALUE_CHARS as SECRET_VALUE_MAX

T = TypeVar("T")
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


# Numbers and flags in request bodies are taken as JSON types only: true is not 1, "5" is not 5.
# Integers are bounded by what their columns hold (PostgreSQL integer).
INT4_MAX = 2**31 - 1
MAX_PARAMS_DEPTH = 32
MAX_PARAMS_BYTES = 64 * 1024


def _params(value: dict[str, Any]) -> dict[str, Any]:
    depth = 0
    level: list[Any] = [value]
    while level:
        depth += 1
        if depth > MAX_PARAMS_DEPTH:
            raise ValueError(f"params may be nested at most {MAX_PARAMS_DEPTH} levels deep")
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_PARAMS_BYTES:
        raise ValueError(f"params take {size} bytes as JSON; at most {MAX_PARAMS_BYTES} (64 KiB) are allowed")
    return value


Params = Annotated[
    dict[str, Any],
    AfterValidator(_params),
    Field(description=f"free-form JSON object, at most {MAX_PARAMS_DEPTH} levels deep and 64 KiB"),
]


RetryOn = Literal["FAILED", "ERROR", "TIMEOUT"]
MAX_BACKOFF_S = 24 * 3600


class RetryPolicyIn(Strict):
    """One layer of a retry policy: keys left out come from the layer below.

    Layers, lowest first: server defaults, the test case, the suite, the submission.
    """

    max_retries: StrictInt | None = Field(
        default=None, ge=0, le=20, description="retries after the first try"
    )
    retry_on: list[RetryOn] | None = Field(
        default=None, max_length=3, description="which results are retried (default ERROR and TIMEOUT)"
    )
    backoff_base_s: StrictFloat | None = Field(
        default=None, gt=0, le=MAX_BACKOFF_S, description="delay before the first retry; doubles each time"
    )
    backoff_cap_s: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=MAX_BACKOFF_S,
        description="the delay stops doubling here (jitter still applies)",
    )
    jitter: StrictFloat | None = Field(
        default=None, ge=0, le=1, description="+/- this fraction of each delay"
    )

    @field_validator("retry_on")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value is not None else None

    @field_validator("backoff_cap_s")
    @classmethod
    def _cap_not_below_base(cls, value: float | None, info: ValidationInfo) -> float | None:
        base = info.data.get("backoff_base_s")
        if value is not None and base is not None and value < base:
            raise ValueError(f"must be at least backoff_base_s ({base:g})")
        return value

    def layer(self) -> dict[str, Any]:
        """The keys this layer sets, as stored (on a case, a suite, or merged into an execution)."""
        return self.model_dump(mode="json", exclude_none=True)


RETRY_POLICY_HELP = "retry policy overrides, key by key; null: inherit every key"
FILE_MAP_HELP = (
    "changed-files selection: glob of changed paths -> what they select, each target a test path "
    'prefix or tag:<t>, e.g. {"src/payments/**": ["tests/payments", "tag:billing"]}; '
    "** crosses directories, * does not"
)
FileMap = Annotated[dict[str, Any], AfterValidator(check_file_map), Field(description=FILE_MAP_HELP)]
SPEC_HELP = (
    "what to run, checked for the kind: generic - workspace and steps (commands); pytest - workspace "
    "and args; bdd - workspace and exactly one of feature (a file) or feature_text; manual - steps"
)


class TestCaseCreate(Strict):
    __test__ = False
    name: Name
    kind: CaseKind = CaseKind("generic")
    spec: dict[str, Any] = Field(description=SPEC_HELP)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    timeout_s: StrictInt | None = Field(
        default=None, gt=0, le=INT4_MAX, description="whole-test timeout; server default if omitted"
    )
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    retry_policy: RetryPolicyIn | None = Field(default=None, description=RETRY_POLICY_HELP)
    file_map: FileMap | None = None


class TestCaseUpdate(Strict):
    __test__ = False
    name: Name | None = None
    spec: dict[str, Any] | None = Field(default=None, description=SPEC_HELP)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    timeout_s: StrictInt | None = Field(default=None, gt=0, le=INT4_MAX)
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    retry_policy: RetryPolicyIn | None = Field(default=None, description=RETRY_POLICY_HELP)
    file_map: FileMap | None = None


class TestCasePublic(BaseModel):
    __test__ = False
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    kind: str
    spec: dict[str, Any]
    tags: list[str]
    timeout_s: int
    description: str | None
    retry_policy: dict[str, Any] | None = None
    file_map: dict[str, list[str]] | None = None
    version: int
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


# At most this many explicit members: a suite's expansion is one bulk insert.
MAX_SUITE_CASE_IDS = 10_000
Description = Annotated[str, StringConstraints(max_length=10_000)]


class TestSuiteCreate(Strict):
    __test__ = False
    name: Name
    description: Description | None = None
    case_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_SUITE_CASE_IDS)
    tags: list[Tag] = Field(
        default_factory=list, max_length=50, description="also run every live case carrying any of these"
    )
    fail_fast: StrictBool = Field(
        default=False, description="the first failure cancels the members not started"
    )
    default_priority: Priority = Priority.NORMAL
    retry_policy: RetryPolicyIn | None = Field(
        default=None, description="overrides its members' case policies, key by key"
    )
    file_map: FileMap | None = None
    gate: GateRules | None = Field(default=None, description=GATE_HELP)


class TestSuiteUpdate(Strict):
    __test__ = False
    name: Name | None = None
    description: Description | None = None
    case_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_SUITE_CASE_IDS)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    fail_fast: StrictBool | None = None
    default_priority: Priority | None = None
    retry_policy: RetryPolicyIn | None = Field(
        default=None, description="overrides its members' case policies, key by key"
    )
    file_map: FileMap | None = None
    gate: GateRules | None = Field(default=None, description=GATE_HELP)


class TestSuitePublic(BaseModel):
    __test__ = False
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    description: str | None
    case_ids: list[uuid.UUID]
    tags: list[str]
    fail_fast: bool
    default_priority: str
    retry_policy: dict[str, Any] | None = None
    file_map: dict[str, list[str]] | None = None
    gate: dict[str, Any] | None = Field(default=None, description="the quality gate its runs are judged by")
    version: int
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= to get the next page; null on the last")


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str


# ---- schedules ---------------------------------------------------------------------------------------


def _cron(value: str) -> str:
    value = " ".join(value.split())
    if not valid_cron(value):
        raise ValueError(
            "not a standard five-field cron expression that ever fires (minute hour day-of-month month "
            "day-of-week, e.g. '0 2 * * *')"
        )
    return value


# In the tz database's directory but not zones a schedule can mean: the host's own zone, tzdata's
# placeholder, and the rules file.
NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@functools.cache
def iana_zones() -> frozenset[str]:
    return frozenset(available_timezones() - NOT_ZONES)


def _zone(value: str) -> str:
    if value not in iana_zones():
        raise ValueError(f"{value!r} is not an IANA time zone name (e.g. 'Europe/Berlin', 'UTC')")
    return value


Cron = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_cron)]
TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_zone)]
Overlap = Literal["skip", "allow", "cancel_previous"]
CRON_HELP = "five fields (minute hour day-of-month month day-of-week); day fields combine with OR, as in cron"
OVERLAP_HELP = "while its previous run is still going: skip this slot, allow both, or cancel_previous"
TARGET_HELP = "exactly one of test_case_id and test_suite_id"


class ScheduleCreate(Strict):
    name: Name
    cron: Cron = Field(description=CRON_HELP)
    timezone: TimeZone = Field(default="UTC", description="IANA time zone the cron fields are read in")
    test_case_id: uuid.UUID | None = Field(default=None, description=TARGET_HELP)
    test_suite_id: uuid.UUID | None = Field(default=None, description=TARGET_HELP)
    priority: Priority = Priority.NORMAL
    enabled: StrictBool = True
    overlap: Overlap = Field(default="skip", description=OVERLAP_HELP)
    params: Params = Field(default_factory=dict)


class ScheduleUpdate(Strict):
    name: Name | None = None
    cron: Cron | None = Field(default=None, description=CRON_HELP)
    timezone: TimeZone | None = None
    test_case_id: uuid.UUID | None = Field(
        default=None, description="switch the target to this case (give exactly one of the two ids)"
    )
    test_suite_id: uuid.UUID | None = Field(default=None, description="switch the target to this suite")
    priority: Priority | None = None
    enabled: StrictBool | None = None
    overlap: Overlap | None = Field(default=None, description=OVERLAP_HELP)
    params: Params | None = None


class SchedulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    cron: str
    timezone: str
    test_case_id: uuid.UUID | None
    test_suite_id: uuid.UUID | None
    priority: str
    enabled: bool
    disabled_reason: str | None = Field(
        default=None,
        description="why Anvil disabled it (its test case or suite was deleted); null when enabled",
    )
    overlap: str
    params: dict[str, Any]
    last_slot_at: datetime | None = Field(description="the latest slot fired (or passed over)")
    next_fire_times: list[datetime] = Field(description="the next five slots (UTC); empty while disabled")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


# ---- test secrets ------------------------------------------------------------------------------------


class SecretPut(Strict):
    value: SecretStr = Field(description="the secret's value; stored encrypted, never returned")

    @field_validator("value")
    @classmethod
    def _usable_in_env(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not text:
            raise ValueError("the value cannot be empty")
        if len(text) > SECRET_VALUE_MAX:
            raise ValueError(f"the value may be at most {SECRET_VALUE_MAX} characters")
        if "\x00" in text:
            raise ValueError("the value cannot contain NUL characters (it becomes an environment variable)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the value is not valid Unicode text (a lone surrogate)") from None
        return value


class SecretPublic(BaseModel):
    """What anyone may know of a secret: never its value."""

    name: str
    created_at: datetime
    created_by: uuid.UUID | None
    created_by_name: str | None = Field(description="the username of created_by")
    updated_at: datetime
    updated_by: uuid.UUID | None
    updated_by_name: str | None = Field(description="the username of updated_by")


class SecretList(BaseModel):
    items: list[SecretPublic] = Field(description="every test secret, by name")
