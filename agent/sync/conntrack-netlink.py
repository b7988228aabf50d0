#!/usr/bin/env python3
"""loxiha's ctnetlink helper for session sync: `write` puts entries into this host's kernel;
`events MASK` streams the kernel's changes to the flows whose ct mark has every bit of MASK.

The writer (the default, or `write`):

Why this exists: conntrack-tools' `-U` and `-D` find their entries by dumping the whole table
(measured here: 14 ms a line at 5,000 entries, and a `-U` in a `-R` file stops the whole load with
"Protocol error" after a few dozen), and Node cannot open a netlink socket. One ctnetlink message
per entry is a hash lookup in the kernel: create (exclusive), update (no NAT attributes: the kernel
refuses to change NAT on an existing entry) or delete, by the original tuple.

Standard library only (Python 3.9+, on Amazon Linux 2023 by default). Reads batches on stdin, one
entry per line, the sync channel's fields separated by spaces:
    op proto src dst sport dport rsrc rdst rsport rdport mark state timeout flags
op: n (new on the owner: create, or update when it exists after all), u (update, or create when
it is missing), x (delete); state '-' for UDP; flags: 1 seen reply, 2 assured. A line "." ends
a batch; the answer is one line:
    done <entries> <created> <updated> <deleted> <missing> <failed> [<errno>:<count>...]
<errno> names the kernel's refusals (e.g. ENOENT:2), and each refusal's first few entries come
before the answer, one line each: "refused <errno> <the entry's line>".
An unreadable line is an error of the whole batch (nothing of it applied): "error <why>".

The writer's socket has a fixed netlink port id (WRITER_PORTID, or `write PORTID`): the kernel
stamps that id on the events of every change the writer makes, so the event reader skips them.
Without this, two instances that both owned the VIP (a split brain) streamed each other's injected
copies back and forth for as long as it lasted. One writer per network namespace: a second one
cannot bind the id and exits saying so.

The event reader (`events [WRITER_PORTID]`): subscribes to conntrack's new, update and destroy
events on a socket whose receive buffer it sets itself (SO_RCVBUFFORCE, 64 MB). `conntrack -E -b`
(conntrack-tools 1.4.7) applies its buffer size to a socket that is not the one subscribed to the
events, which keeps the kernel's default (208 KB, ≈ 70 ms of events at 15,000/s): the owner lost
events whenever its reader paused longer (seen in /proc/net/netlink: drops on the subscribed
socket). It writes the kernel's messages to stdout unparsed, in batches as they come (the agent
reads them: parsing them here cost 41 µs of CPU per new flow); on stderr, "ready" once subscribed
and "lost <why>" when the kernel dropped events (the streams then resync). Changes the writer made
(stamped with its port id) are dropped by a socket filter in the kernel: an injected copy is never
streamed again, nor even read.

Both modes end with the agent, however it ends: the kernel signals them when their parent dies
(PR_SET_PDEATHSIG), and they exit when their standard input closes.
"""
import ctypes
import errno
import gc
import os
import signal
import socket
import struct
import sys
import threading
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_DELETE = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
# Attributes (linux/netfilter/nfnetlink_conntrack.h).
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_NAT_SRC, CTA_TIMEOUT, CTA_MARK, CTA_NAT_DST = 1, 2, 3, 4, 6, 7, 8, 13
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY = 1, 1, 4, 5
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
CTA_NAT_V4_MINIP, CTA_NAT_V4_MAXIP, CTA_NAT_PROTO = 1, 2, 3
CTA_PROTONAT_PORT_MIN, CTA_PROTONAT_PORT_MAX = 1, 2
IPS_SEEN_REPLY, IPS_ASSURED, IPS_CONFIRMED = 2, 4, 8
TCP_STATES = {'NONE': 0, 'SYN_SENT': 1, 'SYN_RECV': 2, 'ESTABLISHED': 3, 'FIN_WAIT': 4, 'CLOSE_WAIT': 5,
              'LAST_ACK': 6, 'TIME_WAIT': 7, 'CLOSE': 8, 'SYN_SENT2': 9}
PROTO = {'tcp': 6, 'udp': 17}
# Messages per send: their acknowledgements (capped, 36 bytes each) fit the receive buffer.
CHUNK = 512
# The writer's netlink port id: above any process id (the kernel's first choice of id is the
# process id, at most 2^22) and below the ids it picks after (negative numbers from -4096).
WRITER_PORTID = 0x4C580001
# Refused entries reported per errno and batch (the rest are counted).
REFUSED_SAMPLES = 3


# Messages are packed from fixed layouts (native-endian netlink headers; addresses, ports, mark,
# timeout and status in network order, as ctnetlink wants them).
htons, htonl = socket.htons, socket.htonl
TUPLE = struct.Struct('=HH HH HH4s HH4s HH HHB3x HHH2x HHH2x')  # 52 bytes
NAT = struct.Struct('=HH HH4s HH4s HH HHH2x HHH2x')  # 40 bytes
COMMON = struct.Struct('=HHI HHI HHI')  # timeout, mark, status: 24 bytes
TCP_INFO = struct.Struct('=HH HH HHB3x HHBB2x HHBB2x')  # 32 bytes
HEAD = struct.Struct('=IHHII BBH')  # nlmsghdr + nfgenmsg: 20 bytes
N = NLA_F_NESTED


def tuple_attr(kind, src, dst, proto, sport, dport):
    return TUPLE.pack(52, kind | N, 20, CTA_TUPLE_IP | N, 8, CTA_IP_V4_SRC, src, 8, CTA_IP_V4_DST, dst,
                      28, CTA_TUPLE_PROTO | N, 5, CTA_PROTO_NUM, proto, 6, CTA_PROTO_SRC_PORT, htons(sport), 6, CTA_PROTO_DST_PORT, htons(dport))


def nat_attr(kind, ip, port):
    return NAT.pack(40, kind | N, 8, CTA_NAT_V4_MINIP, ip, 8, CTA_NAT_V4_MAXIP, ip,
                    20, CTA_NAT_PROTO | N, 6, CTA_PROTONAT_PORT_MIN, htons(port), 6, CTA_PROTONAT_PORT_MAX, htons(port))


class Entry:
    __slots__ = ('line', 'op', 'proto', 'src', 'dst', 'sport', 'dport', 'rsrc', 'rdst', 'rsport', 'rdport', 'mark', 'state', 'timeout', 'flags')

    def __init__(self, line):
        self.line = line
        f = line.split(' ')
        if len(f) != 14 or f[0] not in ('n', 'u', 'x') or f[1] not in PROTO:
            raise ValueError('not an entry')
        self.op, self.proto = f[0], PROTO[f[1]]
        self.src, self.dst, self.rsrc, self.rdst = (socket.inet_aton(a) for a in (f[2], f[3], f[6], f[7]))
        self.sport, self.dport, self.rsport, self.rdport, self.mark, self.timeout, self.flags = (int(x) for x in (f[4], f[5], f[8], f[9], f[10], f[12], f[13]))
        for p in (self.sport, self.dport, self.rsport, self.rdport):
            if not 0 < p < 65536:
                raise ValueError('port out of range')
        if not (0 <= self.mark <= 0xffffffff and 0 < self.timeout <= 432000 and 0 <= self.flags <= 3):
            raise ValueError('field out of range')
        if self.proto == 6:
            if f[11] not in TCP_STATES:
                raise ValueError('unknown TCP state')
            self.state = TCP_STATES[f[11]]
        elif f[11] != '-':
            raise ValueError('a UDP entry has no state')
        else:
            self.state = None

    def orig(self):
        return tuple_attr(CTA_TUPLE_ORIG, self.src, self.dst, self.proto, self.sport, self.dport)

    def common(self):
        # CONFIRMED too: the kernel refuses (EBUSY) a status that would flip it, on create and update.
        status = IPS_CONFIRMED | (IPS_SEEN_REPLY if self.flags & 1 else 0) | (IPS_ASSURED if self.flags & 2 else 0)
        out = COMMON.pack(8, CTA_TIMEOUT, htonl(self.timeout), 8, CTA_MARK, htonl(self.mark), 8, CTA_STATUS, htonl(status))
        if self.state is not None:
            # The copy has no window tracking data (the owner's kernel saw the segments, this one did
            # not): liberal window checks both ways, as conntrack-tools sets on the entries it creates.
            lib = IP_CT_TCP_FLAG_BE_LIBERAL
            out += TCP_INFO.pack(32, CTA_PROTOINFO | N, 28, CTA_PROTOINFO_TCP | N, 5, CTA_PROTOINFO_TCP_STATE, self.state,
                                 6, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, lib, lib, 6, CTA_PROTOINFO_TCP_FLAGS_REPLY, lib, lib)
        return out

    def create(self):
        # The reply tuple as before NAT (the original inverted); the NAT attributes make the kernel
        # translate it into the owner's, binding the NAT exactly as the owner's kernel did.
        body = self.orig() + tuple_attr(CTA_TUPLE_REPLY, self.dst, self.src, self.proto, self.dport, self.sport)
        if self.rsrc != self.dst or self.rsport != self.dport:
            body += nat_attr(CTA_NAT_DST, self.rsrc, self.rsport)
        if self.rdst != self.src or self.rdport != self.sport:
            body += nat_attr(CTA_NAT_SRC, self.rdst, self.rdport)
        return IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, body + self.common()

    def update(self):
        return IPCTNL_MSG_CT_NEW, 0, self.orig() + self.common()

    def delete(self):
        return IPCTNL_MSG_CT_DELETE, 0, self.orig()


class Writer:
    def __init__(self, portid=WRITER_PORTID):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        # A writer just killed (a restart) may hold the id for a moment longer: retry for 2 s.
        for attempt in range(40):
            try:
                self.sock.bind((portid, 0))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise SystemExit('cannot bind netlink port id %#x: %s' % (portid, os.strerror(e.errno)))
                if attempt == 39:
                    raise SystemExit('cannot bind netlink port id %#x: another conntrack writer runs in this network namespace' % portid)
                time.sleep(0.05)
        self.seq = 0

    def run(self, messages):
        """
        Sends (type, flags, body) messages; returns the error number of each (0: done). Only the
        last message of a send asks for an acknowledgement: the kernel handles a send's messages in
        order before the call returns, and reports each failure, so silence means success.
        """
        results = []
        for i in range(0, len(messages), CHUNK):
            chunk = messages[i:i + CHUNK]
            first = self.seq + 1
            last = first + len(chunk) - 1
            out = []
            for kind, flags, body in chunk:
                self.seq += 1
                ack = NLM_F_ACK if self.seq == last else 0
                out.append(HEAD.pack(20 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | kind, NLM_F_REQUEST | ack | flags, self.seq, 0, socket.AF_INET, 0, 0) + body)
            self.sock.send(b''.join(out))
            errs = {}
            while last not in errs:
                data = self.sock.recv(1 << 20)
                off = 0
                while off + 16 <= len(data):
                    length, kind, _, seq, _ = struct.unpack_from('=IHHII', data, off)
                    if kind == NLMSG_ERROR and first <= seq <= last:
                        errs[seq] = -struct.unpack_from('=i', data, off + 16)[0]
                    off += (length + 3) & ~3
            results.extend(errs.get(first + k, 0) for k in range(len(chunk)))
        return results


def apply(writer, entries):
    """
    n: create (the peer cannot have a flow new on the owner), then update when it exists after all;
    u: update (the peer most likely has it), then create when it does not; x: delete.
    """
    counts = {'created': 0, 'updated': 0, 'deleted': 0, 'missing': 0}
    failed = {}
    samples = []

    def fail(err, e):
        failed[err] = failed.get(err, 0) + 1
        if failed[err] <= REFUSED_SAMPLES:
            samples.append('refused %s %s\n' % (errno.errorcode.get(err, 'E%d' % err), e.line))

    first = [e.delete() if e.op == 'x' else e.create() if e.op == 'n' else e.update() for e in entries]
    again = []
    for e, err in zip(entries, writer.run(first)):
        if err == 0:
            counts['deleted' if e.op == 'x' else 'created' if e.op == 'n' else 'updated'] += 1
        elif err == errno.ENOENT and e.op == 'x':
            counts['missing'] += 1
        elif (err == errno.EEXIST and e.op == 'n') or (err == errno.ENOENT and e.op == 'u'):
            again.append(e)
        else:
            fail(err, e)
    for e, err in zip(again, writer.run([e.update() if e.op == 'n' else e.create() for e in again])):
        if err == 0:
            counts['updated' if e.op == 'n' else 'created'] += 1
        else:
            fail(err, e)
    errs = ''.join(' %s:%d' % (errno.errorcode.get(k, 'E%d' % k), v) for k, v in sorted(failed.items()))
    return ''.join(samples) + 'done %d %d %d %d %d %d%s' % (len(entries), counts['created'], counts['updated'], counts['deleted'], counts['missing'], sum(failed.values()), errs)


# Event groups (linux/netfilter/nfnetlink_compat.h): new, update, destroy.
NF_NETLINK_CONNTRACK_NEW, NF_NETLINK_CONNTRACK_UPDATE, NF_NETLINK_CONNTRACK_DESTROY = 1, 2, 4
SO_RCVBUFFORCE = 33
EVENT_BUFFER = 64 << 20
# How long the reader lets events gather after the first one wakes it.
GATHER_S = 0.001


SO_ATTACH_FILTER = 26
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06


def skip_portid_filter(sock, portid):
    """
    A socket filter that drops, in the kernel, the events of changes made from netlink port
    `portid` (the agent's writer): the reader is never woken for an injected copy. The filter loads
    the header's port id (host order) as a network-order word, hence the byte swap.
    """
    swapped = struct.unpack('>I', struct.pack('=I', portid))[0]
    code = struct.pack('=HBBI HBBI HBBI HBBI', BPF_LD_W_ABS, 0, 0, 12, BPF_JEQ_K, 0, 1, swapped, BPF_RET_K, 0, 0, 0, BPF_RET_K, 0, 0, 0xffffffff)
    keep = ctypes.create_string_buffer(code, len(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack('HL', 4, ctypes.addressof(keep)))


def events(skip_portid):
    """
    The kernel's messages go to stdout as they are (the agent parses them: agent/sync/ctnetlink-event.ts);
    "ready <receive buffer>" and "lost <why>" go to stderr, one line each.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, EVENT_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)  # not root: capped by rmem_max
    skip_portid_filter(sock, skip_portid)
    sock.bind((0, NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY))
    err = sys.stderr
    err.write('ready %d\n' % sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    err.flush()
    out = sys.stdout.buffer
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    parts = []
    while True:
        # Block for the first message; then, after GATHER_S, take everything queued and write it
        # at once. Written one by one, each event cost the reader a wake-up, a failed read and a
        # write (21 µs of CPU per new flow at 10,000/s); gathered, a write carries ~10 events at
        # that rate and a lone event waits GATHER_S.
        try:
            n = sock.recv_into(buf, 0, socket.MSG_DONTWAIT if parts else 0)
        except BlockingIOError:
            out.write(b''.join(parts))
            out.flush()
            parts = []
            continue
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            err.write('lost the kernel dropped conntrack events (ENOBUFS)\n')
            err.flush()
            continue
        if not parts:
            time.sleep(GATHER_S)
        parts.append(view[:n].tobytes())
        if len(parts) >= 512:
            out.write(b''.join(parts))
            out.flush()
            parts = []


PR_SET_PDEATHSIG = 1


def die_with_parent():
    """
    Ends this process when the agent that started it ends, however it ends: SIGKILL from the kernel
    when the parent dies (set before anything else; a parent already gone by then is seen as a new
    parent process id), and exit when stdin closes (the event reader's main loop waits on the kernel,
    not on stdin, so a thread watches it).
    """
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: stdin's end still ends it
    expected = os.environ.get('LOXIHA_PARENT_PID')
    if os.getppid() != parent or (expected and expected != str(parent)):
        os._exit(0)


def exit_on_stdin_eof():
    def watch():
        while sys.stdin.buffer.read1(4096):
            pass
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


def main():
    die_with_parent()
    if len(sys.argv) > 1 and sys.argv[1] == 'events':
        gc.disable()  # nothing here makes reference cycles
        exit_on_stdin_eof()
        return events(int(sys.argv[2], 0) if len(sys.argv) > 2 else WRITER_PORTID)
    writer = Writer(int(sys.argv[2], 0) if len(sys.argv) > 2 and sys.argv[1] == 'write' else WRITER_PORTID)
    batch, bad = [], None
    for line in sys.stdin:
        line = line.rstrip('\n')
        if line == '.':
            out = 'error %s' % bad if bad else apply(writer, batch)
            sys.stdout.write(out + '\n')
            sys.stdout.flush()
            batch, bad = [], None
            continue
        if bad:
            continue
        try:
            batch.append(Entry(line))
        except (ValueError, OSError) as e:
            bad = '%s: %s' % (e, line[:120])


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        os._exit(0)
