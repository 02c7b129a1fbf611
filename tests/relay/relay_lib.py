"""Process-test helpers for crdt-relay and crdt-chat (stdlib only).

Every wait is bounded in time; every process started is recorded and
killed by kill_all(), which the tests call in a finally block.
"""

import os
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

WAIT = 30.0  # seconds: the bound on every wait
SERVER_ID = '0102030405060708090a0b0c0d0e0f10'
LINE = re.compile(r'^(\d+) ([0-9a-f]{32}:\d+) (\w+) ([^:]*): (.*)$')

_procs = []


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def kill_all():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    _procs.clear()


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    _procs.append(p)
    return p


class Relay:
    def __init__(self, exe, data, log, extra=()):
        self.exe, self.data, self.logpath = exe, data, log
        self.extra = list(extra)
        self.p = None
        self.port = 0

    def start(self, port=0):
        """Start on `port` (0 = ephemeral); retries a port still held
        by a killed predecessor a bounded number of times."""
        for _ in range(50):
            log = open(self.logpath, 'ab')
            self.p = spawn([self.exe, '--data', self.data, '--port',
                            str(port)] + self.extra,
                           stdout=subprocess.PIPE, stderr=log)
            log.close()
            line = self._first_line()
            m = re.match(r'^listening 127\.0\.0\.1:(\d+)$', line)
            if m:
                self.port = int(m.group(1))
                return self.port
            self.p.wait(WAIT)
            if port == 0:
                break  # not a port still held: a real failure
            time.sleep(0.2)
        raise Failure('relay did not start: ' + self.log()[-500:])

    def _first_line(self):
        fd = self.p.stdout.fileno()
        buf = b''
        end = time.monotonic() + WAIT
        while b'\n' not in buf and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                chunk = os.read(fd, 256)
                if not chunk:
                    break
                buf += chunk
        return buf.decode(errors='replace').strip()

    def addr(self):
        return '127.0.0.1:%d' % self.port

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(WAIT)

    def term(self):
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(WAIT)

    def alive(self):
        return self.p.poll() is None

    def log(self):
        with open(self.logpath, 'rb') as f:
            return f.read().decode(errors='replace')

    def wait_log(self, pattern, since=0):
        """Bounded wait for a log line matching `pattern` past offset
        `since`; returns the line."""
        rx = re.compile(pattern)
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            for line in self.log()[since:].splitlines():
                if rx.search(line):
                    return line
            time.sleep(0.05)
        raise Failure('no relay log line matching %r; log tail:\n%s' %
                      (pattern, self.log()[-1500:]))


class Client:
    """crdt-chat options for one replica (its own store)."""

    def __init__(self, exe, relay, doc, user, data, extra=()):
        self.exe, self.relay, self.doc = exe, relay, doc
        self.user, self.data, self.extra = user, data, list(extra)
        self.args_server = True

    def args(self, dump=None, extra=()):
        a = [self.exe, '--connect', self.relay.addr(), '--doc', self.doc,
             '--user', self.user, '--data', self.data,
             '--timeout', str(int(WAIT * 1000))]
        if self.args_server:
            a += ['--server-id', SERVER_ID]
        if dump:
            a += ['--dump', dump]
        return a + self.extra + list(extra)

    def run(self, script, dump=None, extra=(), expect_rc=0):
        """Run a script to completion; returns its stdout."""
        p = spawn(self.args(dump, extra), stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(script.encode(), timeout=WAIT * 2)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise Failure('%s timed out: %s' % (self.user, err.decode()))
        out, err = out.decode(), err.decode()
        check(p.returncode == expect_rc, '%s exited %d, stderr:\n%s' %
              (self.user, p.returncode, err))
        return out

    def start(self, extra=()):
        return Live(spawn(self.args(None, extra), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE),
                    self.user)


class Live:
    """A running crdt-chat fed line by line, its stdout read by a
    thread."""

    def __init__(self, p, name):
        self.p, self.name = p, name
        self.lines = []
        self.q = queue.Queue()
        t = threading.Thread(target=self._read, daemon=True)
        t.start()

    def _read(self):
        for raw in self.p.stdout:
            self.q.put(raw.decode(errors='replace').rstrip('\n'))
        self.q.put(None)

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def wait_line(self, pred):
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                raise Failure('%s ended early' % self.name)
            self.lines.append(line)
            if pred(line):
                return line
        raise Failure('%s: timed out waiting' % self.name)

    def kill9(self):
        self.p.kill()
        self.p.wait(WAIT)

    def drain(self):
        """After the process ended: take the lines still in the pipe."""
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                return
            self.lines.append(line)
        raise Failure('%s: output never ended' % self.name)


def posted(out):
    return [l.split()[1] for l in out.splitlines() if l.startswith('posted ')]


def acked_before_sync(out):
    """Ids posted before a `synced` line: sync ends only once the
    server acknowledged every message of ours."""
    acked, pending = [], []
    for l in out.splitlines():
        if l.startswith('posted '):
            pending.append(l.split()[1])
        elif l == 'synced':
            acked += pending
            pending = []
    return acked


def thread(out):
    """The last printed thread: [(id, status, user, body)]."""
    blocks, cur = [], None
    for l in out.splitlines():
        if l.startswith('thread '):
            cur = []
        elif l == 'end' and cur is not None:
            blocks.append(cur)
            cur = None
        elif cur is not None:
            m = LINE.match(l)
            check(m is not None, 'bad thread line %r' % l)
            cur.append((m.group(2), m.group(3), m.group(4), m.group(5)))
    check(blocks, 'no thread printed in:\n' + out)
    return blocks[-1]


def delivered(out):
    return [m[0] for m in thread(out) if m[1] in ('delivered', 'read')]


def frame(ftype, doc, payload=b''):
    body = bytes([ftype]) + doc + payload
    return struct.pack('>I', len(body)) + body


def read_frames(sock_bytes):
    """Split a byte stream into (type, doc, payload); the rest."""
    out = []
    while len(sock_bytes) >= 4:
        n = struct.unpack('>I', sock_bytes[:4])[0]
        if len(sock_bytes) < 4 + n:
            break
        body = sock_bytes[4:4 + n]
        out.append((body[0], body[1:33], body[33:]))
        sock_bytes = sock_bytes[4 + n:]
    return out, sock_bytes


def wait_closed(s):
    """True when the peer closes `s` within the bound (data read before
    the close is ignored)."""
    s.settimeout(0.5)
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        try:
            if s.recv(65536) == b'':
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def connect(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(WAIT)
    s.connect(('127.0.0.1', port))
    return s


class Capture:
    """A one-connection TCP proxy in front of the relay that records the
    frames the client sends (to replay them as a hostile peer)."""

    def __init__(self, port):
        self.up_port = port
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(1)
        self.ls.settimeout(WAIT)
        self.port = self.ls.getsockname()[1]
        self.sent = b''
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _pump(self, a, b, record):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if record:
                    self.sent += d
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self):
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        u = socket.create_connection(('127.0.0.1', self.up_port), WAIT)
        c.settimeout(None)
        u.settimeout(None)
        t = threading.Thread(target=self._pump, args=(u, c, False),
                             daemon=True)
        t.start()
        self._pump(c, u, True)
        t.join(WAIT)
        c.close()
        u.close()

    def frames(self):
        self.t.join(WAIT)
        self.ls.close()
        return read_frames(self.sent)[0]
