"""Compares two customer_segments tables (segflow's and the DuckDB reference's) row by row.

    python compare_outputs.py SEGFLOW_DIR REFERENCE_DIR

Values are compared as text after normalizing types (decimal precision and integer widths may
differ between engines; the values may not). Prints `equal N` or the first differences and
exits 1.
"""
import sys

import pyarrow.dataset as ds


def rows(path):
    table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    names = sorted(c for c in table.column_names if c != "period")
    data = {n: [None if v is None else str(v) for v in table.column(n).to_pylist()] for n in names}
    out = sorted(zip(*(data[n] for n in names)))
    return names, out


def main():
    a_names, a = rows(sys.argv[1])
    b_names, b = rows(sys.argv[2])
    if a_names != b_names:
        print(f"columns differ: {a_names} vs {b_names}")
        sys.exit(1)
    diffs = [(x, y) for x, y in zip(a, b) if x != y]
    if len(a) != len(b) or diffs:
        print(f"rows: {len(a)} vs {len(b)}; {len(diffs)} differ")
        for x, y in diffs[:5]:
            print(" segflow:  ", dict(zip(a_names, x)))
            print(" reference:", dict(zip(b_names, y)))
        sys.exit(1)
    print(f"equal {len(a)}")


if __name__ == "__main__":
    main()
