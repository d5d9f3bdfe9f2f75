"""Value types coerce strictly; definitions validate in __post_init__ and round-trip through their specs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aisd.core.errors import InvalidRequestError
from aisd.features import (
    Array,
    Bool,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Int32,
    Int64,
    OnDemandFeatureView,
    PushSource,
    RequestSource,
    String,
    UnixTimestamp,
    on_demand_feature_view,
)
from aisd.features.dtypes import parse_dtype
from aisd.features.model import compile_udf


def test_coercion_is_strict_and_names_the_field() -> None:
    assert Int64.coerce(np.int64(3), "x") == 3
    assert Int64.coerce(4.0, "x") == 4  # pandas int columns with nulls arrive as floats
    assert Float32.coerce(2, "x") == 2.0
    assert Float32.coerce(float("nan"), "x") is None
    assert Array(Float32).coerce(np.array([1, 2], dtype=np.float32), "e") == [1.0, 2.0]
    assert UnixTimestamp.coerce(datetime(1970, 1, 2, tzinfo=UTC), "t") == 86400.0
    for dtype, bad in [(Int64, "1"), (Int64, True), (Int64, 1.5), (String, 3), (Bool, 1), (Float32, "0.1"),
                       (Array(Int64), 3)]:
        with pytest.raises(InvalidRequestError) as e:
            dtype.coerce(bad, "driver_id")
        assert e.value.param == "driver_id" and str(dtype) in e.value.message
    with pytest.raises(InvalidRequestError, match="does not fit"):
        Int32.coerce(2**40, "n")


def test_dtype_names_round_trip_and_sql_acceptance() -> None:
    for t in (Int64, Float32, String, Array(Float32), UnixTimestamp):
        assert parse_dtype(str(t)) == t
    assert Float32.accepts_sql("DOUBLE") and Float32.accepts_sql("BIGINT")
    assert not Int64.accepts_sql("DOUBLE") and not String.accepts_sql("BIGINT")
    assert Array(Float32).accepts_sql("FLOAT[]")
    with pytest.raises(ValueError, match="expected one of"):
        parse_dtype("decimal")


def _view(**kw: object) -> FeatureView:
    args = {"name": "v", "entities": [Entity("driver", ["driver_id"])], "source": FileSource("x.parquet"),
            "schema": [Field("driver_id", Int64), Field("a", Float32)], "ttl": timedelta(hours=1)}
    args.update(kw)
    return FeatureView(**args)  # type: ignore[arg-type]


def test_definitions_validate() -> None:
    assert _view().feature_names == ["a"] and _view().join_keys == ["driver_id"]
    with pytest.raises(ValueError, match="invalid"):
        _view(name="1bad")
    with pytest.raises(ValueError, match="no features"):
        _view(schema=[Field("driver_id", Int64)])
    with pytest.raises(ValueError, match="duplicate"):
        _view(schema=[Field("a", Int64), Field("a", Int64)])
    with pytest.raises(ValueError, match="ttl"):
        _view(ttl=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="exactly one join key"):
        Entity("e", ["a", "b"])
    with pytest.raises(ValueError, match="file_format"):
        FileSource("x.json", file_format="json")
    with pytest.raises(ValueError, match="has no features"):
        _view()[["nope"]]
    assert FileSource("d/x.csv").file_format == "csv"


def test_specs_round_trip() -> None:
    v = _view(source=PushSource("p", FileSource("x.parquet", created_timestamp_column="c")), tags={"team": "ml"})
    ents = {"driver": Entity("driver", ["driver_id"])}
    assert FeatureView.from_spec(v.to_spec(), ents).to_spec() == v.to_spec()
    svc = FeatureService("svc", [v[["a"]]])
    assert FeatureService.from_spec(svc.to_spec()).feature_refs() == ["v:a"]


def test_on_demand_view_keeps_its_source_and_recompiles() -> None:
    req = RequestSource("r", [Field("k", Int64)])

    @on_demand_feature_view(sources=[_view(), req], schema=[Field("b", Float32)])
    def plus(inputs):  # noqa: ANN001, ANN202
        out = pd.DataFrame()
        out["b"] = inputs["a"] + inputs["k"]
        return out

    assert isinstance(plus, OnDemandFeatureView) and plus.udf_source.startswith("def plus")
    again = OnDemandFeatureView.from_spec(plus.to_spec())
    import pandas as pd

    got = again.udf(pd.DataFrame({"a": [1.0], "k": [2]}))
    assert got["b"].tolist() == [3.0]
    assert again.input_refs() == [("v", "a")]
    with pytest.raises(Exception, match="does not compile"):
        compile_udf("x", "def broken(:\n")
