# workflow-worker's Python fork server (see fork_server.rs). Started once per worker with a
# clean environment, it forks a fresh process for each Python snippet, so a snippet starts
# in about a millisecond instead of an interpreter's start-up, and shares nothing with any
# other snippet: each runs in a process (and process group) of its own, which the worker
# kills on timeout or cancellation exactly as a process it spawned itself.
#
# Protocol. fd 0 is a SOCK_SEQPACKET socket from the worker (the bootstrap in `-c` read
# this source from it and left it in `c`). Each later message is a request: 8 bytes of id
# (little endian) with four file descriptors: the request pipe (JSON: code and environment),
# and the snippet's stdin, stdout and stderr. fd 1 carries answers, one line each:
# "S <id> <pid>" when the snippet's process is started, "E <id> <code>" when it has ended
# (the exit status, or minus the signal that killed it). End of file on fd 0 means the
# worker is gone: the server kills the process groups it started and exits.
import atexit
import json
import os
import select
import signal
import socket
import struct
import sys
import types

_control = c
del c
_children = {}


def _answer(line):
    data = line.encode()
    while data:
        data = data[os.write(1, data):]


def _exit_code(status):
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _reap():
    while _children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        rid = _children.pop(pid, None)
        if rid is not None:
            _answer("E %d %d\n" % (rid, _exit_code(status)))


def _snippet(fds, wakeup):
    # In the forked child: become the leader of a new session and process group, take the
    # streams, forget the server, and run the snippet as `python -c` would.
    request, stdin, stdout, stderr = fds
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in wakeup:
        os.close(fd)
    _control.close()
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    for fd in (stdin, stdout, stderr):
        os.close(fd)
    with os.fdopen(request, "rb") as pipe:
        spec = json.loads(pipe.read())
    os.environ.clear()
    os.environ.update(spec["env"])
    sys.argv[:] = ["-c"]
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    code = 0
    try:
        exec(compile(spec["code"], "<string>", "exec"), main.__dict__)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException as e:
        # The traceback starts at the snippet, as `python -c` prints it.
        e.__traceback__ = e.__traceback__.tb_next
        sys.excepthook(type(e), e, e.__traceback__)
        code = 1
    threading = sys.modules.get("threading")
    if threading is not None and hasattr(threading, "_shutdown"):
        threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = 120
    os._exit(code & 0xFF)


def _serve():
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    space = socket.CMSG_SPACE(4 * struct.calcsize("i"))
    _answer("R %d.%d\n" % sys.version_info[:2])
    while True:
        ready = select.select([_control, wake_r], [], [])[0]
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            _reap()
        if _control not in ready:
            continue
        message, ancillary, _, _ = _control.recvmsg(8, space)
        fds = []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(data) // struct.calcsize("i")
                fds.extend(struct.unpack("%di" % count, data[: count * 4]))
        if not message:
            break
        (rid,) = struct.unpack("<Q", message)
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            _answer("E %d 70\n" % rid)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                _snippet(fds, (wake_r, wake_w))
            finally:
                os._exit(70)
        for fd in fds:
            os.close(fd)
        _children[pid] = rid
        _answer("S %d %d\n" % (rid, pid))
    for pid in list(_children):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


_serve()
