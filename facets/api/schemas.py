"""Marshmallow schemas: the spec's objects under the spec's names, and the query arguments.

Component names come from the class names minus ``Schema`` (``SandboxFacetsResponse``,
``SandboxProjectFacetEntry``, ``SandboxStateFacetEntry``, ``APIErrorPayload``,
``ValidationErrorItem``).
"""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma
from marshmallow import validate

from models import SANDBOX_STATES
from models.project import PROJECT_KEY_PATTERN
from models.services.sandboxes import CREATABLE_STATES

ERROR_TYPES = (
    "already_exists_error app_error authentication_error conflict_error aws_error "
    "configuration_error database_error dynamodb_error e2b_error e2b_rate_limit_error "
    "expired_signature_error expired_token_error forbidden_error group_error invalid_error "
    "invalid_flag_error invalid_username_error mail_error member_exists_error "
    "member_limit_exceeded_error migration_lock_timeout_error not_found_error "
    "oauth_config_error org_sandbox_capacity_exceeded_error bad_gateway_error "
    "gateway_timeout_error s3_error server_error task_error stripe_error token_error "
    "upgrade_required_error usage_limit_exceeded_error user_verification_error "
    "validation_error"
).split()
ERROR_CODES = (400, 401, 403, 404, 409, 422, 426, 429, 500, 502, 504)
STATE_CHOICES_MESSAGE = "Must be one of: " + ", ".join(SANDBOX_STATES) + "."
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class ValidationErrorItemSchema(ma.Schema):
    loc = ma.fields.List(
        ma.fields.Raw(),
        required=True,
        metadata={"description": "Where the validation error occurred"},
    )
    msg = ma.fields.String(
        required=True, metadata={"description": "Human-readable validation message"}
    )
    type = ma.fields.String(
        required=True, metadata={"description": "Machine-readable validation error type"}
    )


class APIErrorPayloadSchema(ma.Schema):
    """Canonical API error envelope returned by the API."""

    code = ma.fields.Integer(
        required=True,
        validate=validate.OneOf(ERROR_CODES),
        metadata={"description": "HTTP status code"},
    )
    detail = ma.fields.String(
        required=True, metadata={"description": "Human-readable error message"}
    )
    errors = ma.fields.List(ma.fields.Nested(ValidationErrorItemSchema), allow_none=True)
    type = ma.fields.String(
        required=True,
        validate=validate.OneOf(ERROR_TYPES),
        metadata={"description": "Stable machine-readable error type"},
    )


class StateFilterField(ma.fields.List):
    """Sandbox states from repeated keys, comma-separated values, or both.

    webargs reads every occurrence of the key (``is_multiple``); each is split on commas.
    Empty items and duplicates are dropped, so ``state=`` alone means no filter.
    """

    is_multiple = True
    # What the OpenAPI document admits for each occurrence: exactly what _deserialize accepts.
    ITEM_PATTERN = r"^ *((running|paused|killed) *)?(, *((running|paused|killed) *)?)*$"

    def __init__(self, **kwargs) -> None:
        super().__init__(
            ma.fields.String(
                metadata={
                    "pattern": self.ITEM_PATTERN,
                    "description": "running, paused or killed; or a comma-separated list",
                }
            ),
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[str, ...]:
        raw = value if isinstance(value, list | tuple) else [value]
        states: list[str] = []
        for item in raw:
            if not isinstance(item, str):
                raise ma.ValidationError(STATE_CHOICES_MESSAGE)
            for part in item.split(","):
                part = part.strip(" ")
                if not part:
                    continue
                if part not in SANDBOX_STATES:
                    raise ma.ValidationError(f"Invalid state '{part}'. {STATE_CHOICES_MESSAGE}")
                if part not in states:
                    states.append(part)
        return tuple(states)


ONE_PROJECT_MESSAGE = "Only one project may be given: send project_id once, with one id."


class ProjectFilterField(ma.fields.UUID):
    """One project id. webargs hands over every occurrence of the key (``is_multiple``), so
    that a repeated key is refused like the comma form instead of silently keeping the first.
    """

    is_multiple = True

    def _deserialize(self, value, attr, data, **kwargs):
        values = value if isinstance(value, list | tuple) else [value]
        if len(values) != 1 or (isinstance(values[0], str) and "," in values[0]):
            raise ma.ValidationError(ONE_PROJECT_MESSAGE)
        return super()._deserialize(values[0], attr, data, **kwargs)


class SandboxFilterQueryArgsSchema(ma.Schema):
    """The filters shared by the facets and the sandbox list."""

    class Meta:
        unknown = ma.EXCLUDE

    state = StateFilterField(
        allow_none=True,
        metadata={
            "description": "Active sandbox state filter (repeatable or comma-separated). "
            "Narrows both the states and projects facets."
        },
    )
    project_id = ProjectFilterField(
        allow_none=True, metadata={"description": "Active project filter. Narrows both facets."}
    )


MAX_WAIT_S = 60


class SandboxFacetsQueryArgsSchema(SandboxFilterQueryArgsSchema):
    """Query arguments of the facets endpoint."""

    wait = ma.fields.Integer(
        validate=validate.Range(min=1, max=MAX_WAIT_S),
        metadata={
            "description": "Seconds to wait for the view to change (1-60), with `If-None-Match`: "
            "while the tag sent is still the view's, the response waits until the view changes "
            "(then `200` with the new body) or the time runs out (plus up to `wait/16` s of "
            "jitter; then `304`). Without `If-None-Match`, or with a stale tag, it answers at "
            "once."
        },
    )


class SandboxStateFacetEntrySchema(ma.Schema):
    """A single sandbox state and its count under the caller's filters."""

    count = ma.fields.Integer(required=True, metadata={"title": "Count"})
    value = ma.fields.String(
        required=True, validate=validate.OneOf(SANDBOX_STATES), metadata={"title": "Value"}
    )


class SandboxProjectFacetEntrySchema(ma.Schema):
    """A single project bucket and its sandbox count.

    Sandboxes without a project are omitted from this facet because they cannot be used as
    project filter options; they are still included in the state facet counts and the sandbox
    list response.
    """

    count = ma.fields.Integer(required=True, metadata={"title": "Count"})
    project_id = ma.fields.UUID(allow_none=True, metadata={"title": "Project Id"})
    project_key = ma.fields.String(allow_none=True, metadata={"title": "Project Key"})
    project_name = ma.fields.String(allow_none=True, metadata={"title": "Project Name"})


class SandboxFacetsResponseSchema(ma.Schema):
    """Per-dimension value counts for sandboxes matching the caller's filter.

    Every caller-supplied filter is applied to both facets: counts reflect "what's in the
    current view". Both lists are pre-sorted by count DESC with a stable alphabetical
    tiebreaker.
    """

    projects = ma.fields.List(
        ma.fields.Nested(SandboxProjectFacetEntrySchema),
        metadata={
            "title": "Projects",
            "description": "Distinct projects with sandbox counts. Sandboxes without a project "
            "are omitted because they cannot be selected as project filter options.",
        },
    )
    states = ma.fields.List(
        ma.fields.Nested(SandboxStateFacetEntrySchema),
        metadata={
            "title": "States",
            "description": "Distinct sandbox state values with sandbox counts. "
            "Empty buckets are omitted.",
        },
    )


class SandboxListQueryArgsSchema(SandboxFilterQueryArgsSchema):
    """Query arguments of the sandbox list: the facet filters plus a page."""

    state = StateFilterField(
        allow_none=True,
        metadata={"description": "Sandbox state filter (repeatable or comma-separated)."},
    )
    project_id = ProjectFilterField(allow_none=True, metadata={"description": "Project filter."})
    limit = ma.fields.Integer(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": f"Page size (default {DEFAULT_PAGE_SIZE})."},
    )
    cursor = ma.fields.String(
        allow_none=True,
        metadata={"description": "The `next_cursor` of the previous page; omit for the first."},
    )


class SandboxSchema(ma.Schema):
    """A sandbox as the API shows it."""

    id = ma.fields.UUID(required=True)
    project_id = ma.fields.UUID(allow_none=True, required=True)
    state = ma.fields.String(required=True, validate=validate.OneOf(SANDBOX_STATES))
    created_at = ma.fields.AwareDateTime(required=True, default_timezone=UTC)
    updated_at = ma.fields.AwareDateTime(required=True, default_timezone=UTC)


class SandboxListResponseSchema(ma.Schema):
    """One page of sandboxes, newest first."""

    sandboxes = ma.fields.List(ma.fields.Nested(SandboxSchema), required=True)
    next_cursor = ma.fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last page."},
    )


class SandboxCreateSchema(ma.Schema):
    """The body of a sandbox creation."""

    class Meta:
        unknown = ma.RAISE

    project_id = ma.fields.UUID(
        allow_none=True, metadata={"description": "The project; omit or null for none."}
    )
    state = ma.fields.String(
        validate=validate.OneOf(CREATABLE_STATES),
        metadata={"description": "The initial state (default running)."},
    )


class SandboxUpdateSchema(ma.Schema):
    """The body of a sandbox change; omitted fields keep their value."""

    class Meta:
        unknown = ma.RAISE

    project_id = ma.fields.UUID(
        allow_none=True, metadata={"description": "Move to this project; null for none."}
    )
    state = ma.fields.String(
        validate=validate.OneOf(SANDBOX_STATES),
        metadata={"description": "The new state; killed is terminal."},
    )


class ProjectSchema(ma.Schema):
    """A project as the API shows it."""

    id = ma.fields.UUID(required=True)
    key = ma.fields.String(required=True)
    name = ma.fields.String(required=True)


class ProjectListResponseSchema(ma.Schema):
    """The projects the caller can see, by name."""

    projects = ma.fields.List(ma.fields.Nested(ProjectSchema), required=True)


class FullMatch(validate.Regexp):
    """``validate.Regexp`` over the whole value, as the documented pattern means it: Python's
    ``$`` also matches before a final newline, which a JSON Schema (ECMA) ``$`` does not."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


PROJECT_KEY_FIELD = {
    "validate": FullMatch(
        PROJECT_KEY_PATTERN,
        error="1-32 letters, digits, '_' or '-', starting with a letter or digit.",
    ),
    "metadata": {"description": "Short key, unique in the org."},
}
PROJECT_NAME_FIELD = {
    "validate": [
        validate.Length(min=1, max=200),
        # Valid JSON, but no text column can hold it (PostgreSQL refuses NUL).
        validate.ContainsNoneOf("\x00", error="Must not contain the NUL character (U+0000)."),
    ],
    # The NUL refusal in the OpenAPI document too, so that clients generated from it agree.
    "metadata": {"description": "Display name.", "pattern": "^[^\\u0000]*$"},
}


class ProjectCreateSchema(ma.Schema):
    """The body of a project creation."""

    class Meta:
        unknown = ma.RAISE

    key = ma.fields.String(required=True, **PROJECT_KEY_FIELD)
    name = ma.fields.String(required=True, **PROJECT_NAME_FIELD)


class ProjectUpdateSchema(ma.Schema):
    """The body of a project change; omitted fields keep their value."""

    class Meta:
        unknown = ma.RAISE

    key = ma.fields.String(**PROJECT_KEY_FIELD)
    name = ma.fields.String(**PROJECT_NAME_FIELD)


class ProjectMemberAddSchema(ma.Schema):
    """The org member to add to a project."""

    class Meta:
        unknown = ma.RAISE

    email = ma.fields.Email(required=True, metadata={"description": "A member of the org."})
