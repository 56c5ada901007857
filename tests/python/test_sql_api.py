"""The SQL API (migrations 0008 and 0017) driven from Python, as the seed's web API calls it.

A worker binary runs beside the test, as it would beside the API. The test only ever talks
SQL: it starts executions with workflow_start_execution, sends approvals with
workflow_send_signal, cancels with workflow_cancel_execution, and learns that an execution
ended from the workflow_execution_ended channel (LISTEN), without polling for it.

Environment (tests/python/run.sh sets both):
  DATABASE_URL          a fresh, migrated PostgreSQL database
  WORKFLOW_WORKER_BIN   the workflow-worker binary
"""

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "workflow_execution_ended"
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
# Generous: a debug build on a busy two-core machine.
DEADLINE_SECONDS = 60.0

# examples/approval.rs's workflow: wait for "approval", then ship or refund.
APPROVAL = {
    "name": "py_approval",
    "nodes": [
        {"id": "order", "type": "trigger"},
        {
            "id": "approval",
            "type": "wait_for_signal",
            "config": {"signal": "approval", "timeout": 86400},
        },
        {"id": "ship", "type": "code", "config": {"language": "shell", "code": "echo shipped"}},
        {"id": "refund", "type": "code", "config": {"language": "shell", "code": "echo refunded"}},
    ],
    "edges": [
        {"from": "order", "to": "approval"},
        {"from": "approval", "to": "ship", "branch": "approved"},
        {"from": "approval", "to": "refund", "branch": "rejected"},
    ],
}


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run tests/python/run.sh PATH_TO_WORKFLOW_WORKER")
    return value


@pytest.fixture(scope="session")
def database_url():
    return required_env("DATABASE_URL")


@pytest.fixture(scope="session")
def worker_bin():
    path = required_env("WORKFLOW_WORKER_BIN")
    assert os.access(path, os.X_OK), f"WORKFLOW_WORKER_BIN={path} is not executable"
    return path


@pytest.fixture(scope="session")
def worker_env(database_url):
    env = dict(os.environ)
    env.pop("SUPABASE_DB_URL", None)
    env["DATABASE_URL"] = database_url
    return env


@pytest.fixture(scope="session")
def saved_workflows(worker_bin, worker_env, tmp_path_factory):
    """Saves hello and py_approval with the binary, as an operator deploying them would."""
    approval = tmp_path_factory.mktemp("workflows") / "approval.json"
    approval.write_text(json.dumps(APPROVAL))
    for path, name in [(ROOT / "examples" / "hello.json", "hello"), (approval, "py_approval")]:
        saved = subprocess.run(
            [worker_bin, "workflow", "save", str(path)],
            env=worker_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert saved.returncode == 0, f"workflow save {path} failed:\n{saved.stderr}"
        assert f'saved workflow "{name}"' in saved.stdout, saved.stdout


class Worker:
    def __init__(self, process, log_path):
        self.process = process
        self.log_path = log_path

    def log(self):
        return self.log_path.read_text(errors="replace")[-4000:]

    def check_alive(self):
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"the worker exited with {code}:\n{self.log()}")


@pytest.fixture(scope="session")
def worker(worker_bin, worker_env, saved_workflows, tmp_path_factory):
    """`workflow-worker run` in the background, stopped with SIGTERM at the end."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [worker_bin, "run", "--poll-interval", "0.2"],
            env=worker_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = Worker(process, log_path)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"the worker did not stop on SIGTERM:\n{running.log()}")
            assert code == 0, f"the worker exited with {code} on SIGTERM:\n{running.log()}"


@pytest.fixture
def db(database_url, worker):
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


class EndedListener:
    """A session listening on workflow_execution_ended; keeps every notification it reads."""

    def __init__(self, conn, worker):
        self.conn = conn
        self.worker = worker
        self.seen = {}

    def read(self, timeout):
        """Reads the notifications that arrive next (within `timeout` seconds), and returns
        their execution ids in order."""
        ids = []
        # Not left early: that would drop notifications that came in the same packet.
        for note in self.conn.notifies(timeout=timeout, stop_after=1):
            assert note.channel == CHANNEL
            payload = json.loads(note.payload)
            assert set(payload) == {"id", "status"}, note.payload
            # An execution ends once: a second notification would be a bug.
            assert payload["id"] not in self.seen, f"second notification: {note.payload}"
            self.seen[payload["id"]] = payload["status"]
            ids.append(payload["id"])
        return ids

    def wait(self, execution_id, timeout=DEADLINE_SECONDS):
        """The status the channel reports for the execution, waiting at most `timeout`."""
        key = str(execution_id)
        end = time.monotonic() + timeout
        while key not in self.seen:
            self.worker.check_alive()
            remaining = end - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {CHANNEL} notification for {key} within {timeout}s")
            self.read(min(remaining, 1.0))
        return self.seen[key]


@pytest.fixture
def ended(database_url, worker):
    # Listening before anything starts: a notification sent before the LISTEN is not seen.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"listen {CHANNEL}")
        yield EndedListener(conn, worker)


def start(db, workflow, input=None, **named):
    """select workflow_start_execution(...): what the API does for POST /executions."""
    args = ["%s"]
    params = [workflow]
    if input is not None:
        args.append("%s")
        params.append(Jsonb(input))
    for name, value in named.items():
        args.append(f"{name} => %s")
        params.append(value)
    (execution_id,) = db.execute(
        f"select workflow_start_execution({', '.join(args)})", params
    ).fetchone()
    assert isinstance(execution_id, uuid.UUID)
    return execution_id


def send(db, execution_id, name, payload, idempotency_key=None):
    (signal_id,) = db.execute(
        "select workflow_send_signal(%s, %s, %s, %s)",
        (execution_id, name, Jsonb(payload), idempotency_key),
    ).fetchone()
    return signal_id


def cancel(db, execution_id, reason=None):
    if reason is None:
        return db.execute("select workflow_cancel_execution(%s)", (execution_id,)).fetchone()[0]
    return db.execute(
        "select workflow_cancel_execution(%s, %s)", (execution_id, reason)
    ).fetchone()[0]


def execution(db, execution_id):
    row = db.execute(
        "select status, input, output, error, priority, deadline, created_at"
        " from workflow_executions where id = %s",
        (execution_id,),
    ).fetchone()
    assert row is not None, f"no execution {execution_id}"
    keys = ["status", "input", "output", "error", "priority", "deadline", "created_at"]
    return dict(zip(keys, row))


def node_runs(db, execution_id):
    return db.execute(
        "select node_id, node_type, status, branch, output from workflow_node_runs"
        " where execution_id = %s and status <> 'waiting' order by id",
        (execution_id,),
    ).fetchall()


def wait_for_status(db, worker, execution_id, wanted, timeout=DEADLINE_SECONDS):
    """Polls (a waiting execution sends no notification) until the status is `wanted`."""
    end = time.monotonic() + timeout
    while True:
        worker.check_alive()
        status = execution(db, execution_id)["status"]
        if status == wanted:
            return
        assert status not in TERMINAL, f"{execution_id} ended {status}, not {wanted}"
        if time.monotonic() > end:
            pytest.fail(f"{execution_id} still {status} after {timeout}s, not {wanted}")
        time.sleep(0.05)


def assert_no_more_notifications(db, ended):
    """Nothing is pending on the channel: a marker execution, cancelled after everything
    before it, is the next notification (notifications arrive in commit order)."""
    marker = start(db, "py_approval")
    assert cancel(db, marker) == "cancelled"
    assert ended.read(DEADLINE_SECONDS) == [str(marker)]


def test_hello_completes_and_the_channel_says_so(db, ended):
    execution_id = start(db, "hello", {"who": "py"})

    assert ended.wait(execution_id) == "completed"

    row = execution(db, execution_id)
    assert row["status"] == "completed"
    assert row["input"] == {"who": "py"}
    assert row["output"]["stdout"] == "Hello from workflow!\n"
    assert row["output"]["exit_code"] == 0
    runs = [(node, kind, status) for node, kind, status, _, _ in node_runs(db, execution_id)]
    assert runs == [("start", "trigger", "completed"), ("say_hello", "code", "completed")]


@pytest.mark.parametrize(
    "approved, ran, skipped", [(True, "ship", "refund"), (False, "refund", "ship")]
)
def test_approval_signal_resumes_the_waiting_execution(db, ended, worker, approved, ran, skipped):
    execution_id = start(db, "py_approval", {"order": 7})
    wait_for_status(db, worker, execution_id, "waiting")

    signal_id = send(db, execution_id, "approval", {"approved": approved, "by": "ada"})
    assert isinstance(signal_id, int)

    assert ended.wait(execution_id) == "completed"
    runs = {
        node: (status, branch, output)
        for node, _, status, branch, output in node_runs(db, execution_id)
    }
    assert runs["approval"][0] == "completed"
    assert runs["approval"][1] == ("approved" if approved else "rejected")
    assert runs["approval"][2] == {"approved": approved, "by": "ada"}
    assert runs[ran][0] == "completed"
    assert runs[ran][2]["stdout"] == ("shipped\n" if approved else "refunded\n")
    assert runs[skipped][0] == "skipped"
    consumed = db.execute(
        "select consumed_by_node from workflow_signals where id = %s", (signal_id,)
    ).fetchone()
    assert consumed == ("approval",)


def test_a_repeated_idempotency_key_returns_the_first_signal(db, ended, worker):
    execution_id = start(db, "py_approval")
    wait_for_status(db, worker, execution_id, "waiting")

    # One transaction: the execution stays parked until it commits. (Sent one by one, the
    # first would wake it, and a signal committed while the worker parks it again can miss
    # its wake-up: an engine race, the same for plain inserts into workflow_signals.)
    key = f"{execution_id}-decision"
    with db.transaction():
        # A retried send: the same key, even with another payload, is the first signal.
        # ("note" is a signal the workflow never waits for, so it stays in the inbox.)
        first = send(db, execution_id, "note", {"text": "first"}, idempotency_key="k")
        again = send(db, execution_id, "note", {"text": "again"}, idempotency_key="k")
        other = send(db, execution_id, "note", {"text": "other"}, idempotency_key="k2")
        unkeyed = [send(db, execution_id, "note", None), send(db, execution_id, "note", None)]
        # A retried click.
        decision = send(db, execution_id, "approval", {"approved": False}, idempotency_key=key)
        retried = send(db, execution_id, "approval", {"approved": True}, idempotency_key=key)
    assert again == first
    assert other != first
    assert len(set(unkeyed)) == 2
    assert retried == decision

    stored = db.execute(
        "select id, name, payload from workflow_signals where execution_id = %s order by id",
        (execution_id,),
    ).fetchall()
    assert [row[0] for row in stored] == [first, other, *unkeyed, decision]
    assert stored[0][2] == {"text": "first"}
    assert stored[-1][2] == {"approved": False}

    # The first payload decided.
    assert ended.wait(execution_id) == "completed"
    branches = {node: branch for node, _, _, branch, _ in node_runs(db, execution_id)}
    assert branches["approval"] == "rejected"
    # As in the Rust store, the key does not outlive the execution: once it ended, a retry
    # is refused like any signal to an ended execution.
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        send(db, execution_id, "approval", {"approved": False}, idempotency_key=key)


def test_cancel_a_waiting_execution(db, ended, worker):
    execution_id = start(db, "py_approval")
    wait_for_status(db, worker, execution_id, "waiting")

    assert cancel(db, execution_id, "the customer withdrew") == "cancelled"

    assert ended.wait(execution_id) == "cancelled"
    row = execution(db, execution_id)
    assert row["status"] == "cancelled"
    assert row["error"] == "the customer withdrew"
    # Cancelling again changes nothing and reports how it ended, with no second notification.
    assert cancel(db, execution_id, "again") == "cancelled"
    assert execution(db, execution_id)["error"] == "the customer withdrew"
    assert_no_more_notifications(db, ended)


def test_cancel_of_a_completed_execution_returns_its_status(db, ended):
    execution_id = start(db, "hello", {"who": "late"})
    assert ended.wait(execution_id) == "completed"

    assert cancel(db, execution_id) == "completed"
    row = execution(db, execution_id)
    assert row["status"] == "completed"
    assert row["error"] is None
    assert_no_more_notifications(db, ended)


def test_a_pending_cancel_uses_the_default_reason(db, ended):
    # In one transaction, so no worker can claim it between start and cancel.
    with db.transaction():
        execution_id = start(db, "hello")
        assert cancel(db, execution_id) == "cancelled"
    assert ended.wait(execution_id) == "cancelled"
    assert execution(db, execution_id)["error"] == "cancelled by request"
    assert node_runs(db, execution_id) == []


def test_start_by_id_with_priority_and_timeout(db, ended):
    workflow_id, version = db.execute(
        "select id, latest_version from workflows where name = 'py_approval'"
    ).fetchone()
    execution_id = start(db, str(workflow_id), {"order": 1}, timeout_seconds=1.5, priority=5)

    row = execution(db, execution_id)
    assert row["priority"] == 5
    assert row["input"] == {"order": 1}
    assert abs((row["deadline"] - row["created_at"]).total_seconds() - 1.5) < 0.5
    pinned = db.execute(
        "select workflow_id, workflow_version from workflow_executions where id = %s",
        (execution_id,),
    ).fetchone()
    assert pinned == (workflow_id, version)
    # Nobody approves it: past its deadline the worker ends it, and the channel says so.
    assert ended.wait(execution_id) == "timed_out"
    assert execution(db, execution_id)["error"].startswith("deadline passed at ")


def test_without_a_timeout_the_workflow_timeout_applies(db):
    # hello.json has no "timeout": no deadline.
    with db.transaction(force_rollback=True):
        execution_id = start(db, "hello")
        assert execution(db, execution_id)["deadline"] is None
    # A workflow with one gets it from creation, as plain-SQL inserts do.
    with db.transaction(force_rollback=True):
        db.execute(
            "update workflow_versions v set definition = v.definition || '{\"timeout\": 600}'"
            " from workflows w where w.id = v.workflow_id and w.name = 'hello'"
            " and v.version = w.latest_version"
        )
        execution_id = start(db, "hello")
        row = execution(db, execution_id)
        assert (row["deadline"] - row["created_at"]).total_seconds() == 600


def test_unknown_workflow_is_refused_by_name(db):
    with pytest.raises(psycopg.errors.NoDataFound) as raised:
        start(db, "no_such_workflow", {"who": "py"})
    assert raised.value.diag.message_primary == 'workflow "no_such_workflow" does not exist'
    assert raised.value.sqlstate == "P0002"


def test_unknown_workflow_is_refused_by_id(db):
    missing = uuid.uuid4()
    with pytest.raises(psycopg.errors.NoDataFound) as raised:
        start(db, str(missing))
    assert raised.value.diag.message_primary == f"workflow {missing} does not exist"


def test_invalid_timeout_is_refused(db):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        start(db, "hello", timeout_seconds=-1.0)
    assert "must be a number of seconds, 0 or more" in raised.value.diag.message_primary


def test_signal_to_an_ended_execution_is_refused(db, ended):
    execution_id = start(db, "hello")
    assert ended.wait(execution_id) == "completed"

    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as raised:
        send(db, execution_id, "approval", {"approved": True})
    assert raised.value.diag.message_primary == (
        f"execution {execution_id} already ended (completed); signals are not accepted"
    )
    stored = db.execute(
        "select count(*) from workflow_signals where execution_id = %s", (execution_id,)
    ).fetchone()
    assert stored == (0,)


def test_signal_and_cancel_of_an_unknown_execution_are_refused(db):
    missing = uuid.uuid4()
    with pytest.raises(psycopg.errors.NoDataFound) as raised:
        send(db, missing, "approval", {"approved": True})
    assert raised.value.diag.message_primary == f"execution {missing} does not exist"
    with pytest.raises(psycopg.errors.NoDataFound) as raised:
        cancel(db, missing)
    assert raised.value.diag.message_primary == f"execution {missing} does not exist"


def test_many_ended_in_one_statement_each_notify_once(db, ended):
    # A batched end, as a worker's batch or a deadline sweep does it: one statement, one
    # notification per execution.
    with db.transaction():
        ids = [start(db, "py_approval", {"n": n}) for n in range(5)]
        db.execute(
            "update workflow_executions"
            " set status = 'cancelled', error = 'bulk', finished_at = now(), run_at = null,"
            "     lease_owner = null, lease_expires_at = null"
            " where id = any(%s)",
            (ids,),
        )
    for execution_id in ids:
        assert ended.wait(execution_id) == "cancelled"
    assert_no_more_notifications(db, ended)


def start_or_get(db, workflow, key, input=None, key_reuse=None):
    """select * from workflow_start_or_get(...): (id, created)."""
    return db.execute(
        "select execution_id, created from workflow_start_or_get("
        "%s, %s, key => %s, key_reuse => coalesce(%s, 'never'))",
        (workflow, Jsonb(input or {}), key, key_reuse),
    ).fetchone()


def test_a_start_with_a_key_returns_the_execution_holding_it(db, ended, worker):
    key = f"order-{uuid.uuid4()}"
    first = start(db, "py_approval", {"order": 1}, key=key)
    # A retried request: the same execution, whatever the input.
    assert start(db, "py_approval", {"order": 2}, key=key) == first
    assert start_or_get(db, "py_approval", key) == (first, False)
    assert execution(db, first)["input"] == {"order": 1}
    # Another key, or none, starts another.
    other = start(db, "py_approval", key=f"{key}-b")
    assert other != first
    assert start(db, "py_approval") != start(db, "py_approval")

    # Once it ended, the key still names it, unless the start allows a new one.
    assert cancel(db, first) == "cancelled"
    assert ended.wait(first) == "cancelled"
    assert start(db, "py_approval", key=key) == first
    renewed, created = start_or_get(db, "py_approval", key, key_reuse="after_end")
    assert created and renewed != first
    assert start(db, "py_approval", key=key) == renewed
    for execution_id in (other, renewed):
        cancel(db, execution_id)

    # A plain insert with a key another execution holds is refused by the unique index.
    with pytest.raises(psycopg.errors.UniqueViolation, match="workflow_executions_active_key"):
        db.execute(
            "insert into workflow_executions (workflow_id, key)"
            " select workflow_id, key from workflow_executions where id = %s",
            (start(db, "py_approval", key=f"{key}-c"),),
        )
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="key_reuse"):
        start(db, "py_approval", key=key, key_reuse="sometimes")


def test_two_sessions_starting_one_key_at_once_create_one_execution(database_url, db, worker):
    """The first session's start is held open in a transaction; the second, at the same key,
    waits for it and returns the same execution once it commits."""
    key = f"race-{uuid.uuid4()}"
    with psycopg.connect(database_url) as first_session, psycopg.connect(
        database_url, autocommit=True
    ) as second_session:
        first_id, created = start_or_get(first_session, "py_approval", key)
        assert created
        results = []
        racer = threading.Thread(
            target=lambda: results.append(start_or_get(second_session, "py_approval", key))
        )
        racer.start()
        racer.join(timeout=1.0)
        assert racer.is_alive(), "the second start should wait for the first to commit"
        first_session.commit()
        racer.join(timeout=DEADLINE_SECONDS)
        assert not racer.is_alive()
    assert results == [(first_id, False)]
    (count,) = db.execute(
        "select count(*) from workflow_executions where key = %s", (key,)
    ).fetchone()
    assert count == 1
    cancel(db, first_id)


def test_signal_with_start_from_two_sessions_starts_one_execution_with_both_signals(
    database_url, db, ended, worker
):
    """The seed's approval flow keyed by order: whichever of two senders comes first starts
    the execution, and the approval reaches it either way."""
    key = f"order-{uuid.uuid4()}"
    call = (
        "select execution_id, signal_id, created from workflow_signal_with_start("
        "%s, %s, %s, %s, input => %s)"
    )
    with psycopg.connect(database_url) as first_session, psycopg.connect(
        database_url, autocommit=True
    ) as second_session:
        first_id, first_signal, created = first_session.execute(
            call, ("py_approval", key, "note", Jsonb({"from": "first"}), Jsonb({"order": 9}))
        ).fetchone()
        assert created
        results = []
        racer = threading.Thread(
            target=lambda: results.append(
                second_session.execute(
                    call,
                    ("py_approval", key, "approval", Jsonb({"approved": True}), Jsonb({})),
                ).fetchone()
            )
        )
        racer.start()
        racer.join(timeout=1.0)
        assert racer.is_alive(), "the second call should wait for the first to commit"
        first_session.commit()
        racer.join(timeout=DEADLINE_SECONDS)
        assert not racer.is_alive()
    [(second_id, second_signal, second_created)] = results
    assert (second_id, second_created) == (first_id, False)
    assert second_signal != first_signal
    signals = db.execute(
        "select name from workflow_signals where execution_id = %s order by id", (first_id,)
    ).fetchall()
    assert signals == [("note",), ("approval",)]
    # The approval sent before the wait began is kept and consumed: it ships.
    assert ended.wait(first_id) == "completed"
    branches = {node: branch for node, _, _, branch, _ in node_runs(db, first_id)}
    assert branches["approval"] == "approved"
    assert execution(db, first_id)["input"] == {"order": 9}
    # Ended, the key is not reused by default: the signal is refused.
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="already ended"):
        db.execute(call, ("py_approval", key, "approval", Jsonb({}), Jsonb({})))
