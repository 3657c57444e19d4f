// Package transport is the QUIC peer transport: it carries Raft messages
// between the members of an edgekv cluster. It implements
// raftnode.Transport and delivers inbound traffic to a raftnode.Raft.
//
// # What it owns
//
// A Transport owns one UDP socket (Config.ListenAddr), a QUIC listener and
// dialer on it, an in-memory self-signed ECDSA P-256 certificate generated
// by New, one sending goroutine and bounded queue per peer, one reading
// goroutine and one stream-accepting goroutine per inbound connection, one
// goroutine per snapshot being sent or received, and one goroutine that
// makes delivery reports to Raft. Close stops and waits for all of them
// and releases the socket.
//
// # Threading
//
// Send is called from the Raft goroutine and never blocks: it puts each
// message on its peer's queue (4096 messages). When a queue is full the
// message is dropped and the peer reported unreachable; a dropped MsgSnap
// is also reported as SnapshotFailure. Messages to unknown peers are
// dropped silently. SendSnapshot never blocks either: it starts a goroutine
// that sends one snapshot (see Snapshots). AddPeer, RemovePeer,
// SendSnapshot and Close may be called from any goroutine; Close must not
// be called from inside a Raft method.
//
// The transport calls Raft as follows:
//   - Process: from the reading goroutine of each inbound connection (one
//     per connected peer), in the order the peer sent, with a context that
//     Close cancels; and, for a MsgSnap that came with its db, from that
//     snapshot's goroutine once SnapshotReceiver.ReceiveSnapshot returned,
//     unordered with respect to the message stream.
//   - ReportUnreachable and ReportSnapshot: only from the transport's single
//     report goroutine, never from the caller of Send or SendSnapshot.
//     ReportUnreachable follows a dropped message, a failed dial or
//     handshake, a lost connection and a failed SendSnapshot.
//     ReportSnapshot(SnapshotFinish) follows the peer's ack of a snapshot
//     sent with SendSnapshot (its db stored and its MsgSnap handed to
//     Raft); SnapshotFailure follows any failure of SendSnapshot, including
//     a second snapshot to a peer that has one in flight. Without
//     Config.Snapshots, a MsgSnap passed to Send travels as a message and
//     SnapshotFinish follows the write of its frame (handed to QUIC, not
//     acknowledged); with Config.Snapshots, Send drops a MsgSnap with a
//     warning and SnapshotFailure.
//
// SnapshotReceiver.ReceiveSnapshot is called from the goroutine of each
// incoming snapshot stream, so possibly concurrently for different peers
// and always concurrently with Process of ordinary messages.
//
// Each peer's writer takes everything queued into one frame, yields once
// (runtime.Gosched) so that a Raft goroutine about to queue more can, takes
// that too, and writes the frame. With Config.Metrics set, it counts the
// frames, messages and bytes it wrote per peer, and the reader the bytes
// it read (metrics.go; the byte counters under etcd's names).
//
// # Connections and streams
//
// The wire is QUIC with ALPN "edgekv-raft/1" and TLS 1.3 only. As in etcd's
// rafthttp, each member dials each peer and opens one long-lived
// bidirectional stream on which it sends its messages to that peer, in
// order: an outbound connection only sends messages and snapshots, an
// inbound one only receives them. A writer drains everything queued for its
// peer into one frame (up to MaxFrameBytes) and writes it with one Write. A
// failed dial or write is retried after a backoff doubling from 50 ms to
// 2 s, with jitter. Keep-alives every second and a 6 s idle timeout detect
// dead peers; a stateless reset key derived from the token and member ID
// lets a restarted member reset its predecessor's connections at once.
//
// The first stream of a connection is the message stream. Every later
// stream the dialer opens starts with a kind byte; the only kind is a
// snapshot stream, one per snapshot (see Snapshots). The listener accepts
// one message stream and up to three snapshot streams at a time per
// connection, and only serves later streams once the hello succeeded; it
// resets a stream of unknown kind (stream error 0x3) and keeps the
// connection. The message stream and the hello are as before snapshot
// streams existed; a member from before them accepts no second stream, so
// SendSnapshot to it fails after 10 s. The dialer sends message frames at
// a higher QUIC priority (urgency 2) than snapshot chunks (urgency 5), so
// heartbeats and appends never wait behind a snapshot.
//
// # Frames
//
// Every frame, hello, messages or snapshot ack, is
//
//	length   u32, big-endian: the number of payload bytes
//	payload  CBOR (core/codec deterministic encoding)
//
// A message frame's payload is a CBOR array of messages. Each message is a
// CBOR array (positional, `toarray`) of
//
//	[type, to, from, term, logTerm, index, entries, commit, vote, snapshot,
//	 reject, rejectHint, context]
//	entry     = [term, index, type, data]
//	snapshot  = [data, metadata]
//	metadata  = [confState, index, term]
//	confState = [voters, learners, votersOutgoing, learnersNext, autoLeave]
//
// where an absent optional field is null, so raftpb's field presence
// survives the round trip. Message.Responses is local to a member and not
// sent. A frame longer than MaxFrameBytes (default 32 MiB), one that is not
// valid CBOR of that shape, or one with an unknown message or entry type is
// a protocol error: the receiver logs it and closes the connection with
// QUIC application error 0x5 without reading or delivering further. Messages
// whose From is not the authenticated peer, or whose To is not this member,
// are dropped. EncodeFrame and DecodeFrame are the codec; readers never
// panic on any input.
//
// Message frames are written and read by hand (wirecodec.go), not by
// core/codec's reflection, which cost the leader some 6% of its CPU; hello
// and snapshot ack frames still go through core/codec. The writer
// produces exactly the bytes codec.Marshal produced for the positional
// structs kept in wireform_test.go (nil byte strings and empty or nil
// entries and ID lists as null, an empty byte string as 0x40, a nil entry
// as an empty one, a negative type as a negative integer), and the reader
// accepts exactly the payloads core/codec's decoder accepted, with the
// same results, leniencies included: integer and length heads need not be
// the shortest; undefined reads as null; a payload of null is no messages;
// a null entry is an empty one and a null ID an ID of 0; a simple value
// other than false, true, null and undefined reads as an unsigned integer
// (simple(5) as 5); and an array of unsigned integers up to 255 reads as a
// byte string. It rejects tags, floats, indefinite lengths, arrays of more
// than 2^20 elements and trailing bytes, and bounds every count by the
// bytes left before allocating for it. The tests check both directions
// against core/codec on random messages, and FuzzDecodePayload on
// arbitrary payloads. The decoded Data of one message's entries share a
// single allocation (each slice capped at its length), so an entry kept
// alive keeps its siblings' data too.
//
// # Authentication
//
// Certificates are not verified. Instead the members prove to each other
// that they know the cluster token (--initial-cluster-token), bound to the
// TLS session so the proof cannot be replayed or relayed. Right after the
// handshake the dialer opens the stream and sends a hello frame whose
// payload is the CBOR array
//
//	[from u64, to u64, clusterID u64, mac bstr(32)]
//	mac = HMAC-SHA256(key = token,
//	                  msg = ekm || role || from || to || clusterID)
//	ekm = TLS exporter: ExportKeyingMaterial("EXPORTER-edgekv-peer-auth", nil, 32)
//
// with the integers as 8-byte big-endian and role the ASCII string "dial"
// (or "discover", see Cluster ID discovery). The listener checks the MAC
// in constant time, then that clusterID is its cluster, that to is its own
// ID and that from is a peer added with AddPeer, and replies with its own
// hello (role "accept", from and to swapped), which the dialer checks the
// same way, including that the reply comes from the member it meant to
// reach. Only then does the dialer send message frames. The exchange must
// finish within 5 s. On any failure the
// connection is closed with a QUIC application error and a reason, and a
// warning naming the remote address is logged on the refusing side:
//
//	0x1 cluster token mismatch   0x5 protocol error (bad hello or frame)
//	0x2 cluster ID mismatch      0x6 superseded by a newer connection
//	0x3 member ID mismatch       0x7 member shutting down or removed
//	0x4 unknown member
//
// A member keeps at most one inbound connection per peer: a newly
// authenticated one closes the older one with 0x6.
//
// # Cluster ID discovery
//
// A member joining a running cluster (member add, then
// --initial-cluster-state existing) knows its own ID and the other
// members' IDs and addresses, but not the cluster ID. DiscoverClusterID
// learns it with a discovery hello, a variant of the hello above on a
// connection of its own (dialed from an ephemeral UDP port, before New):
//
//	[from u64, to u64, clusterID u64 = 0, mac bstr(32)]
//	mac = HMAC-SHA256(key = token, msg = ekm || "discover" || from || to || 0)
//
// The listener takes a hello whose MAC verifies with role "dial" as a
// normal hello, whatever its clusterID: one with clusterID 0 is refused
// with 0x2 as before. Only a hello with clusterID 0 whose MAC verifies
// with role "discover" is a discovery; any other MAC is refused with 0x1.
// A discovery is then checked like a normal hello (to must be the
// listener's ID, else 0x3; from must be a peer added with AddPeer, else
// 0x4), and refused with 0x2 if the listener itself has cluster ID 0. The
// listener answers with its ordinary reply hello (role "accept", carrying
// its cluster ID), serves nothing else on that connection, delivers
// nothing to Raft and does not count the connection as the peer's inbound
// one; it waits up to 5 s for the joiner to close the connection, then
// closes it with 0x0. The joiner checks the reply's MAC (role "accept"),
// that from is the ID it expects at that address and to is its own (else
// it closes with 0x1 or 0x3), and that the cluster ID is not 0 (else
// 0x5), then closes with 0x0 and uses the ID. Each failure is retried, as
// the member add may not yet be applied where it asked.
//
// # Snapshots
//
// SendSnapshot sends a MsgSnap with the backend db (a bbolt file, possibly
// hundreds of MB) on a new stream of the peer's authenticated connection,
// waiting up to 10 s for that connection to be (re)established and for
// the stream. At most one snapshot per peer is in flight. The stream is
//
//	kind    u8 = 0x53 ('S')
//	header  a message frame (above) whose array holds exactly one MsgSnap,
//	        with a snapshot; at most MaxFrameBytes
//	size    u64, big-endian: the db's length in bytes
//	chunk*  length u32 BE | crc u32 BE | length bytes of the db
//	end     0 u32 BE      | crc u32 BE of all the db's bytes
//
// with crc the CRC-32C (Castagnoli). A chunk holds 1 to 1 MiB (the sender
// writes 256 KiB) and the chunks add up to size exactly; with size 0 the
// end marker follows the header. The dialer then closes its direction and
// waits for the listener's ack, a frame whose payload is the CBOR array
//
//	[status u8, reason tstr]   status 0: stored and handed to Raft
//	                           status 1: refused; reason (≤ 512 bytes) says why
//
// The listener refuses, with a warning and an ack of status 1, a header
// that is not one MsgSnap from the authenticated peer to itself, a size
// above MaxSnapshotBytes (default 8 GiB; bbolt's own cap is 2 GiB on 32-bit
// ARM), a stream whose db fails a chunk or end CRC, overruns the size or
// ends early, and any error of ReceiveSnapshot or Raft.Process. It then
// stops reading the stream (QUIC stream error 0x1), so a sender still
// writing fails at once; the connection and the member carry on. Otherwise
// it hands the db, as the chunks arrive, to Config.Snapshots (a chunk's
// bytes only once its CRC matched, the last chunk's only once the end
// marker matched too), then the MsgSnap to Raft.Process, then acks status
// 0. Each header and chunk read or write must progress within 30 s;
// waiting for the ack is bounded by the connection staying alive. Stream
// error codes:
//
//	0x0 finished                 0x2 sender gave up, or a member closing
//	0x1 refused by the listener  0x3 unknown stream kind
//
// # Fault injection (tests)
//
// Faults (fault.go) wraps any raftnode.Transport: each message passed to
// its Send is dropped with probability FaultConfig.Drop (never a MsgSnap,
// which Raft waits on) or else handed to the wrapped Send after a delay
// drawn uniformly from [MinDelay, MaxDelay], by one goroutine, in the
// order the messages fall due; so messages overtake each other and Raft
// sees loss and reordering, which the real wire never shows it.
// SetActive(false) passes messages straight through. Close drops what is
// still pending. Only a test build wires it in: edgekv built with the tag
// edgekv_faults (cmd/edgekv/faults_on.go) wraps its transport when
// EDGEKV_FAULT_DELAY is set (ParseFaultConfig: "5ms-40ms,drop=0.05"),
// toggles it on SIGUSR1 and logs the counts every second; every other
// build ignores the variable and links none of it.
package transport
