"""The directly built facets body is exactly the schema's dump, byte for byte."""

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from facets import create_app
from facets.api.schemas import SandboxFacetsResponseSchema
from facets.counts.labels import Label
from facets.counts.read import FacetCounts, facets_body

STATES = st.sampled_from(["running", "paused", "killed"])
NAMES = st.text(min_size=1, max_size=12)
KEYS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,8}", fullmatch=True)


@st.composite
def counts_and_labels(draw):
    project_ids = [str(uuid.uuid4()) for _ in range(draw(st.integers(0, 12)))]
    labels = {}
    for pid in project_ids:
        key, name = draw(KEYS), draw(NAMES)
        labels[pid] = Label(key, name, (name.casefold(), key, pid))
    by_project = {pid: draw(st.integers(1, 5)) for pid in project_ids}
    by_state = draw(st.dictionaries(STATES, st.integers(1, 9)))
    return FacetCounts(by_state, by_project, "warm"), labels


APP = create_app({"DATABASE_URL": "sqlite://", "JWT_SECRET": "x" * 32, "LOG_LEVEL": "WARNING"})


@settings(max_examples=100, deadline=None)
@given(counts_and_labels())
def test_direct_body_equals_the_schema_dump_byte_for_byte(case):
    counts, labels = case
    body = facets_body(counts, labels)
    dumped = SandboxFacetsResponseSchema().dump(body)
    assert dumped == body
    with APP.app_context():
        assert APP.json.response(body).get_data() == APP.json.response(dumped).get_data()


def test_order_breaks_count_ties_by_name_casefolded_then_key_then_id():
    ids = sorted(str(uuid.uuid4()) for _ in range(4))
    rows = [
        ("b", "beta", ids[0]),
        ("a", "Beta", ids[1]),
        ("z", "alpha", ids[2]),
        ("a", "Beta", ids[3]),
    ]
    labels = {pid: Label(key, name, (name.casefold(), key, pid)) for key, name, pid in rows}
    counts = FacetCounts({"running": 2, "paused": 2, "killed": 3}, dict.fromkeys(ids, 1), "warm")
    body = facets_body(counts, labels)
    assert [p["project_id"] for p in body["projects"]] == [ids[2], ids[1], ids[3], ids[0]]
    assert [s["value"] for s in body["states"]] == ["killed", "paused", "running"]
