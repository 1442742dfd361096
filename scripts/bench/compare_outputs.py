"""Compares two output tables (segflow's and the DuckDB reference's) row by row.

    python compare_outputs.py SEGFLOW_DIR REFERENCE_DIR

Used for customer_segments (the shipped pipeline: tests/it/reference.rs and bench job B) and
customer_rfm (bench job A). Both directories hold hive-partitioned Parquet; partition columns
(`period`, …) are left out. A column whose type differs between the sides (decimal precision,
integer width) is compared as text, the others as they are: the values must be equal. Rows are
compared as multisets, EXCEPT ALL both ways in DuckDB (ten million rows: about half a minute
on two cores).
Prints `equal N` and exits 0, or prints the column or row differences (up to five rows only on
each side) and exits 1.
"""
import sys

import duckdb


def view(con, name, path):
    files = f"{path.rstrip('/')}/**/*.parquet"
    con.execute(f"CREATE VIEW raw_{name} AS SELECT * FROM read_parquet('{files}', hive_partitioning = false)")
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE raw_{name}").fetchall()}


def normalized(con, name, columns, types, other):
    """The columns in name order; those whose types differ between the sides as text."""
    exprs = ", ".join(f'"{c}"' if types[c] == other[c] else f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in columns)
    con.execute(f"CREATE VIEW {name} AS SELECT {exprs} FROM raw_{name}")
    return con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    con = duckdb.connect()
    a_types, b_types = view(con, "a", sys.argv[1]), view(con, "b", sys.argv[2])
    a_names, b_names = sorted(a_types), sorted(b_types)
    if a_names != b_names:
        print(f"columns differ: {a_names} vs {b_names}")
        sys.exit(1)
    a_rows = normalized(con, "a", a_names, a_types, b_types)
    b_rows = normalized(con, "b", a_names, b_types, a_types)
    only = {}
    for side, x, y in (("a", "a", "b"), ("b", "b", "a")):
        con.execute(f"CREATE TEMP TABLE only_{side} AS SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y}")
        only[side] = con.execute(f"SELECT count(*) FROM only_{side}").fetchone()[0]
    if a_rows != b_rows or only["a"] or only["b"]:
        print(f"rows: {a_rows} vs {b_rows}; {only['a']} only in segflow's, {only['b']} only in the reference's")
        for label, side in (("segflow:  ", "a"), ("reference:", "b")):
            order = ", ".join(f'"{c}"' for c in sorted(a_names, key=lambda c: c != "customer_id"))
            for row in con.execute(f"SELECT * FROM only_{side} ORDER BY {order} LIMIT 5").fetchall():
                print(" ", label, dict(zip(a_names, row)))
        sys.exit(1)
    print(f"equal {a_rows}")


if __name__ == "__main__":
    main()
