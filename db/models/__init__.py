"""SQLAlchemy 2.0 models, one module per concept. The schema changes only through Alembic
(alembic/versions)."""

from db.models.accounts import ApiToken, LoginThrottle, User
from db.models.base import Base, check_in
from db.models.catalog import Schedule, TestCase, TestSecret, TestSuite
from db.models.executions import (
    Execution,
    ExecutionEvent,
    ExecutionTransition,
    ManualStepResult,
    ShardTest,
    StepTrace,
)
from db.models.history import FAILING_RESULTS, ResultRollup, Test, TestQuarantineEvent, TestResult
from db.models.operations import SchedulerLease, Webhook, WebhookDelivery, Worker

__all__ = [
    "FAILING_RESULTS",
    "Base",
    "check_in",
    "User",
    "ApiToken",
    "LoginThrottle",
    "TestCase",
    "TestSuite",
    "Schedule",
    "TestSecret",
    "Execution",
    "ExecutionTransition",
    "StepTrace",
    "ManualStepResult",
    "ExecutionEvent",
    "ShardTest",
    "Test",
    "TestResult",
    "TestQuarantineEvent",
    "ResultRollup",
    "SchedulerLease",
    "Worker",
    "Webhook",
    "WebhookDelivery",
]
