"""Random bytes into every parser: a result or a clean UserError, never anything else."""

import gzip

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rece_bench.data import parse
from rece_bench.data.parse import Columns
from rece_bench.errors import UserError

COLUMNS = Columns("u", "i", "t")
PARSERS = [(name, lambda path, f=f: f(path)) for name, f in parse.PARSERS.items()] + [
    (name, lambda path, f=f: f(path, COLUMNS)) for name, f in parse.TABLE_PARSERS.items()
]
TEXTY = st.text(alphabet="ab01 ,\t\n{}'\":-TZ.", max_size=300).map(str.encode)
PAYLOAD = st.one_of(
    st.binary(max_size=400),
    TEXTY,
    TEXTY.map(gzip.compress),
    TEXTY.map(lambda b: gzip.compress(b)[: max(len(b) // 2, 3)]),
    st.binary(max_size=200).map(lambda b: parse.GZIP_MAGIC + b),
    st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=PAYLOAD, which=st.sampled_from(PARSERS), strict=st.booleans())
def test_random_bytes_give_a_result_or_a_user_error(tmp_path, payload, which, strict):
    name, parser = which
    path = tmp_path / "input.bin"
    path.write_bytes(payload)
    try:
        result = parser(path) if not strict else _strict(name, path)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert result.interactions > 0
    assert list(result.frame.columns) == ["user", "item", "timestamp"]


def _strict(name, path):
    function = parse.PARSERS.get(name)
    return function(path, strict=True) if function else parse.TABLE_PARSERS[name](path, COLUMNS, strict=True)
