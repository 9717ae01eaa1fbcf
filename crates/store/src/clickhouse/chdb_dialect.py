"""Runs spanblame's ClickHouse statements on a current ClickHouse engine (chdb, in process).

Usage: python chdb_dialect.py PLAN.json
PLAN is {"statements": [{"sql": ..., "expect_rows": N or null}, ...]}. Each statement runs in
order in one session; a failure, or a row count other than expect_rows, exits non-zero naming
the statement. RowBinary answers are counted by the test in Rust, not here: this checks that
the engine accepts the SQL and returns the expected number of rows in TSV form.
"""

import json
import sys
import tempfile

from chdb import session


def main() -> int:
    plan = json.load(open(sys.argv[1]))
    with tempfile.TemporaryDirectory() as data:
        sess = session.Session(data)
        print("chdb", sess.query("SELECT version()", "TSV").bytes().decode().strip())
        for step in plan["statements"]:
            sql = step["sql"]
            expected = step.get("expect_rows")
            try:
                answer = sess.query(sql, "TSV").bytes().decode(errors="replace")
            except Exception as error:  # chdb raises its own error type per failure
                print(f"FAILED: {sql}\n  {error}")
                return 1
            rows = len([line for line in answer.splitlines() if line])
            if expected is not None and rows != expected:
                print(f"FAILED: {sql}\n  {rows} rows, expected {expected}:\n{answer}")
                return 1
            print(f"ok ({rows} rows): {sql[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
