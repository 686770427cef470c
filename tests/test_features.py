"""Tests for softkm.features: column selection, value checks and weights."""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
import pytest

from softkm.errors import InputError, OptionError
from softkm.features import FeatureData, extract_features
from softkm.tables import read_table


def read_csv_text(tmp_path, text: str) -> pd.DataFrame:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return read_table(str(path))


def mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "spend": [10.5, 20.0, 30.25],
            "visits": [1, 2, 3],
            "member": [True, False, True],
            "weight": [1.0, 0.5, 2.0],
        }
    )


# ---------------------------------------------------------------------------------------------
# Column selection


def test_default_features_are_numeric_columns():
    data = extract_features(mixed_frame())
    assert data.feature_names == ["spend", "visits", "weight"]


def test_default_features_skip_weights_column():
    data = extract_features(mixed_frame(), weights="weight")
    assert data.feature_names == ["spend", "visits"]


def test_default_features_skip_excluded():
    data = extract_features(mixed_frame(), exclude=["visits"])
    assert data.feature_names == ["spend", "weight"]


def test_requested_columns_keep_given_order():
    data = extract_features(mixed_frame(), columns=["visits", "spend"])
    assert data.feature_names == ["visits", "spend"]
    assert data.X[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert data.X[:, 1].tolist() == [10.5, 20.0, 30.25]


def test_requested_boolean_column_becomes_zero_one():
    data = extract_features(mixed_frame(), columns=["member"])
    assert data.X[:, 0].tolist() == [1.0, 0.0, 1.0]


def test_requested_unknown_column_lists_available():
    with pytest.raises(InputError, match="column 'spnd' given in --columns not found") as error:
        extract_features(mixed_frame(), columns=["spnd"])
    assert "'spend'" in str(error.value)
    assert "'customer_id'" in str(error.value)


def test_requested_text_column_names_sample_value():
    with pytest.raises(InputError, match=r"column 'customer_id' is not numeric \(sample value 'C1'\)"):
        extract_features(mixed_frame(), columns=["spend", "customer_id"])


def test_requested_date_column_is_not_numeric():
    frame = pd.DataFrame({"day": pd.to_datetime(["2024-01-01", "2024-01-02"]), "a": [1.0, 2.0]})
    with pytest.raises(InputError, match="column 'day' is not numeric"):
        extract_features(frame, columns=["day"])


def test_default_features_skip_date_column():
    frame = pd.DataFrame({"day": pd.to_datetime(["2024-01-01", "2024-01-02"]), "a": [1.0, 2.0]})
    data = extract_features(frame)
    assert data.feature_names == ["a"]


def test_exclude_unknown_column():
    with pytest.raises(InputError, match="column 'nope' given in --exclude not found"):
        extract_features(mixed_frame(), exclude=["nope"])


def test_requested_column_listed_twice():
    with pytest.raises(OptionError, match="listed twice"):
        extract_features(mixed_frame(), columns=["spend", "spend"])


def test_requested_column_also_excluded():
    with pytest.raises(OptionError, match="both --columns and --exclude"):
        extract_features(mixed_frame(), columns=["spend"], exclude=["spend"])


def test_requested_column_also_weights():
    with pytest.raises(OptionError, match="both --columns and --weights"):
        extract_features(mixed_frame(), columns=["spend", "weight"], weights="weight")


def test_no_feature_columns_lists_columns_found():
    frame = pd.DataFrame({"name": ["a", "b"], "flag": [True, False]})
    with pytest.raises(InputError, match="no numeric feature columns") as error:
        extract_features(frame)
    assert "'name', 'flag'" in str(error.value)


def test_empty_column_list():
    with pytest.raises(OptionError, match="--columns names no column"):
        extract_features(mixed_frame(), columns=[])


def test_frame_without_rows():
    with pytest.raises(InputError, match="no data rows"):
        extract_features(pd.DataFrame({"a": pd.Series([], dtype=float)}))


def test_all_columns_excluded():
    with pytest.raises(InputError, match="no numeric feature columns"):
        extract_features(pd.DataFrame({"a": [1.0]}), exclude=["a"])


def test_duplicate_column_labels():
    frame = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    with pytest.raises(InputError, match="two columns named 'a'"):
        extract_features(frame)


def test_non_string_column_labels():
    frame = pd.DataFrame({0: [1.0, 2.0], 1: [3.0, 4.0]})
    data = extract_features(frame, columns=["1"])
    assert data.X[:, 0].tolist() == [3.0, 4.0]


# ---------------------------------------------------------------------------------------------
# Text columns that look numeric


def test_text_column_with_one_bad_value(tmp_path):
    frame = read_csv_text(tmp_path, "a,b\n1.5,1\n2.5,2\nabc,3\n4,4\n")
    with pytest.raises(InputError, match="column 'a' looks numeric but data row 3 contains 'abc'") as error:
        extract_features(frame)
    assert "--exclude" in str(error.value)


def test_requested_text_column_with_one_bad_value():
    frame = pd.DataFrame({"a": ["1", "2", "x"], "b": [1.0, 2.0, 3.0]})
    with pytest.raises(InputError, match="looks numeric but data row 3 contains 'x'") as error:
        extract_features(frame, columns=["a", "b"])
    assert "--columns" in str(error.value)


def test_numbers_stored_as_text():
    frame = pd.DataFrame({"zip": pd.Series(["00123", "04567"], dtype="str"), "a": [1.0, 2.0]})
    with pytest.raises(InputError, match=r"column 'zip' contains numbers stored as text \(sample value '00123'\)"):
        extract_features(frame)


def test_numeric_text_column_can_be_excluded():
    frame = pd.DataFrame({"zip": ["00123", "04567"], "a": [1.0, 2.0]})
    data = extract_features(frame, exclude=["zip"])
    assert data.feature_names == ["a"]


def test_numeric_text_column_not_requested_is_ignored():
    frame = pd.DataFrame({"zip": ["00123", "x"], "a": [1.0, 2.0]})
    data = extract_features(frame, columns=["a"])
    assert data.feature_names == ["a"]


def test_mostly_text_column_is_skipped():
    frame = pd.DataFrame({"city": ["Paris", "Oslo", "7", "Lima"], "a": [1.0, 2.0, 3.0, 4.0]})
    data = extract_features(frame)
    assert data.feature_names == ["a"]


def test_empty_strings_do_not_count_as_text():
    frame = pd.DataFrame({"a": ["1", "", "2", "", "", "oops"], "b": np.arange(6.0)})
    with pytest.raises(InputError, match="data row 6 contains 'oops'"):
        extract_features(frame)


def test_object_column_of_numbers_is_numeric():
    frame = pd.DataFrame({"a": pd.Series([1.5, None, 2], dtype=object)})
    data = extract_features(frame, missing="drop")
    assert data.X[:, 0].tolist() == [1.5, 2.0]


def test_decimal_objects_are_numeric():
    frame = pd.DataFrame({"a": [decimal.Decimal("1.25"), decimal.Decimal("-2")]})
    data = extract_features(frame)
    assert data.X[:, 0].tolist() == [1.25, -2.0]


# ---------------------------------------------------------------------------------------------
# Matrix layout and dtype


def test_integer_columns_become_float64():
    frame = pd.DataFrame({"a": np.array([1, 2, 3], dtype=np.int64), "b": np.array([4, 5, 6], dtype=np.uint8)})
    data = extract_features(frame)
    assert data.X.dtype == np.float64
    assert data.X.tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]


def test_nullable_integer_column():
    frame = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64")})
    data = extract_features(frame, missing="drop")
    assert data.X[:, 0].tolist() == [1.0, 3.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_feature_matrix_layout(dtype):
    data = extract_features(mixed_frame(), dtype=dtype)
    assert isinstance(data, FeatureData)
    assert data.X.dtype == np.dtype(dtype)
    assert data.X.flags.c_contiguous
    assert data.X.shape == (3, 3)


def test_row_index_for_all_rows():
    data = extract_features(mixed_frame())
    assert data.row_index.dtype == np.int64
    assert data.row_index.tolist() == [0, 1, 2]
    assert data.n_dropped == 0
    assert data.sample_weight is None


def test_row_index_ignores_frame_index():
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0]}, index=[10, 20, 30])
    data = extract_features(frame, missing="drop")
    assert data.row_index.tolist() == [0, 2]


def test_float32_overflow_names_column_and_value():
    frame = pd.DataFrame({"a": [1.0, 2.0], "big": [1.0, 1e39]})
    with pytest.raises(InputError, match=r"value 1e\+39 in column 'big' \(data row 2\)") as error:
        extract_features(frame, dtype="float32")
    assert "--dtype float64" in str(error.value)


def test_float32_largest_value_is_fine():
    frame = pd.DataFrame({"a": [float(np.finfo(np.float32).max), -1.0]})
    data = extract_features(frame, dtype="float32")
    assert np.isfinite(data.X).all()


def test_float32_overflow_in_dropped_row_is_ignored():
    frame = pd.DataFrame({"a": [1.0, 1e39], "b": [1.0, np.nan]})
    data = extract_features(frame, dtype="float32", missing="drop")
    assert data.X.tolist() == [[1.0, 1.0]]


@pytest.mark.parametrize("dtype", ["float16", "int64", "double"])
def test_invalid_dtype(dtype):
    with pytest.raises(OptionError, match="dtype"):
        extract_features(mixed_frame(), dtype=dtype)


@pytest.mark.parametrize("missing", ["skip", "ignore", ""])
def test_invalid_missing_policy(missing):
    with pytest.raises(OptionError, match="'error' or 'drop'"):
        extract_features(mixed_frame(), missing=missing)


# ---------------------------------------------------------------------------------------------
# Missing and infinite values


@pytest.mark.parametrize(
    ("cell", "described"),
    [("", "missing"), ("NaN", "missing"), ("nan", "missing"), ("inf", "inf"), ("-inf", "-inf"), ("1e400", "inf")],
)
def test_invalid_value_names_row_and_column(tmp_path, cell, described):
    frame = read_csv_text(tmp_path, f"a,b\n1,2\n3,{cell}\n5,6\n")
    with pytest.raises(InputError, match=rf"1 row has missing or infinite values: data row 2 \('b' {described}\)") as error:
        extract_features(frame)
    assert "--missing drop" in str(error.value)


def test_invalid_values_name_first_three_rows(tmp_path):
    frame = read_csv_text(tmp_path, "a,b\n,1\n2,2\n3,inf\n,\n5,\n6,6\n")
    with pytest.raises(InputError) as error:
        extract_features(frame)
    message = str(error.value)
    assert message.startswith("4 rows have missing or infinite values")
    assert "first data rows 1 ('a' missing), 3 ('b' inf) and 4 ('a' missing, 'b' missing)" in message
    assert "data row 5" not in message


def test_invalid_value_in_excluded_column_is_ignored():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, 1.0]})
    data = extract_features(frame, exclude=["b"])
    assert data.X[:, 0].tolist() == [1.0, 2.0]


def test_missing_drop_removes_rows(tmp_path):
    frame = read_csv_text(tmp_path, "a,b\n1,2\n,4\n5,inf\n7,8\n")
    data = extract_features(frame, missing="drop")
    assert data.X.tolist() == [[1.0, 2.0], [7.0, 8.0]]
    assert data.row_index.tolist() == [0, 3]
    assert data.n_dropped == 2
    assert data.X.flags.c_contiguous


def test_missing_drop_with_no_rows_left():
    frame = pd.DataFrame({"a": [np.nan, 1.0], "b": [1.0, np.inf]})
    with pytest.raises(InputError, match="all 2 rows have missing or infinite values"):
        extract_features(frame, missing="drop")


def test_empty_text_cell_in_csv_column_of_numbers(tmp_path):
    frame = read_csv_text(tmp_path, "a,b\n1,x\n,y\n")
    with pytest.raises(InputError, match=r"data row 2 \('a' missing\)"):
        extract_features(frame)


# ---------------------------------------------------------------------------------------------
# Weights


def test_weights_are_float64():
    frame = pd.DataFrame({"a": [1.0, 2.0], "w": [1, 3]})
    data = extract_features(frame, weights="w")
    assert data.sample_weight.dtype == np.float64
    assert data.sample_weight.tolist() == [1.0, 3.0]


def test_weights_column_not_found():
    with pytest.raises(InputError, match="weights column 'w' not found; available columns: 'a'"):
        extract_features(pd.DataFrame({"a": [1.0]}), weights="w")


def test_weights_column_not_numeric():
    frame = pd.DataFrame({"a": [1.0, 2.0], "w": ["heavy", "light"]})
    with pytest.raises(InputError, match=r"weights column 'w' is not numeric: data row 1 contains 'heavy'"):
        extract_features(frame, weights="w")


def test_negative_weight_names_row_and_value():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "w": [1.0, -0.5, -2.0]})
    with pytest.raises(InputError, match=r"negative weight -0\.5 in data row 2 \(2 negative in total\)"):
        extract_features(frame, weights="w")


def test_all_zero_weights():
    frame = pd.DataFrame({"a": [1.0, 2.0], "w": [0.0, 0.0]})
    with pytest.raises(InputError, match="all weights in column 'w' are 0"):
        extract_features(frame, weights="w")


def test_zero_weights_after_drop():
    frame = pd.DataFrame({"a": [1.0, np.nan], "w": [0.0, 1.0]})
    with pytest.raises(InputError, match="all weights in column 'w' are 0"):
        extract_features(frame, weights="w", missing="drop")


def test_some_zero_weights_are_fine():
    frame = pd.DataFrame({"a": [1.0, 2.0], "w": [0.0, 1.0]})
    data = extract_features(frame, weights="w")
    assert data.sample_weight.tolist() == [0.0, 1.0]


def test_missing_weight_is_reported_like_missing_feature():
    frame = pd.DataFrame({"a": [1.0, 2.0], "w": [1.0, np.nan]})
    with pytest.raises(InputError, match=r"data row 2 \('w' missing\)"):
        extract_features(frame, weights="w")


def test_missing_weight_row_is_dropped():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "w": [1.0, np.nan, 2.0]})
    data = extract_features(frame, weights="w", missing="drop")
    assert data.sample_weight.tolist() == [1.0, 2.0]
    assert data.row_index.tolist() == [0, 2]


def test_infinite_weight_is_invalid():
    frame = pd.DataFrame({"a": [1.0, 2.0], "w": [np.inf, 1.0]})
    with pytest.raises(InputError, match=r"data row 1 \('w' inf\)"):
        extract_features(frame, weights="w")


def test_float32_underflow_names_column_and_value():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 1e-50]})
    with pytest.raises(InputError, match=r"'b' \(data row 2\).*below the smallest float32.*--dtype float64"):
        extract_features(frame, dtype="float32")


def test_float32_exact_zero_is_fine():
    frame = pd.DataFrame({"a": [0.0, -0.0, 1.0]})
    assert extract_features(frame, dtype="float32").X[:, 0].tolist() == [0.0, 0.0, 1.0]
