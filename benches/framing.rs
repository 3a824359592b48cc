//! Criterion benchmarks of the relay's per-message work: finding frame
//! boundaries and recording protocol state, for pgbench-shaped traffic.

use bytes::{BufMut, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pgward::protocol::frame;
use pgward::session::relay::Core;
use pgward::session::state::ProtocolState;

fn msg(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_i32(body.len() as i32 + 4);
    buf.put_slice(body);
}

/// What pgbench -S -M prepared sends per transaction: Bind, Execute, Sync.
fn prepared_select() -> BytesMut {
    let mut b = BytesMut::new();
    msg(&mut b, b'B', b"\0P0_1\0\0\0\0\x01\0\0\0\x0512345\0\0");
    msg(&mut b, b'E', b"\0\0\0\0\0");
    msg(&mut b, b'S', b"");
    b
}

/// What the server answers: BindComplete, DataRow, CommandComplete, ReadyForQuery.
fn select_reply() -> BytesMut {
    let mut b = BytesMut::new();
    msg(&mut b, b'2', b"");
    msg(&mut b, b'D', b"\0\x01\0\0\0\x04-123");
    msg(&mut b, b'C', b"SELECT 1\0");
    msg(&mut b, b'Z', b"I");
    b
}

fn frames(buf: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while let Ok(Some(total)) = frame::check(&buf[at..], 64 << 20) {
        at += total;
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");
    let req = prepared_select();
    let reply = select_reply();

    // 1000 transactions back to back, as in a pipelined burst.
    let mut burst = BytesMut::new();
    for _ in 0..1000 {
        burst.extend_from_slice(&req);
        burst.extend_from_slice(&reply);
    }
    g.throughput(Throughput::Bytes(burst.len() as u64));
    g.bench_function("check 7000 frames", |b| {
        b.iter(|| frames(black_box(&burst)))
    });
    g.finish();

    let mut g = c.benchmark_group("protocol_state");
    g.bench_function("prepared select round trip", |b| {
        let mut st = ProtocolState::default();
        // Held, but unclassified: the state alone does not classify.
        st.statements.insert("P0_1".into(), None);
        b.iter(|| {
            let mut at = 0;
            while let Ok(Some(total)) = frame::check(&req[at..], 64 << 20) {
                let _ = st.on_frontend(req[at], &req[at + 5..at + total]);
                at += total;
            }
            at = 0;
            while let Ok(Some(total)) = frame::check(&reply[at..], 64 << 20) {
                st.on_backend(reply[at], &reply[at + 5..at + total]);
                at += total;
            }
            black_box(st.tx_status)
        })
    });
    g.bench_function("simple query round trip", |b| {
        let mut q = BytesMut::new();
        msg(
            &mut q,
            b'Q',
            b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;\0",
        );
        let mut st = ProtocolState::default();
        b.iter(|| {
            let _ = st.on_frontend(b'Q', &q[5..]);
            st.on_backend(b'T', b"");
            st.on_backend(b'D', b"");
            st.on_backend(b'C', b"SELECT 1\0");
            st.on_backend(b'Z', b"I");
            black_box(st.tx_status)
        })
    });
    g.finish();

    // The session core (no policy, no audit) on 100 pipelined
    // transactions each way: frames read once, recorded and queued.
    let mut g = c.benchmark_group("core");
    let orm = orm_select();
    let orm_reply = orm_reply();
    for (name, req, reply) in [
        ("prepared select x100", &req, &reply),
        ("unnamed parse/bind/describe/execute x100", &orm, &orm_reply),
    ] {
        let (mut cin, mut uin) = (BytesMut::new(), BytesMut::new());
        for _ in 0..100 {
            cin.extend_from_slice(req);
            uin.extend_from_slice(reply);
        }
        let mut core = Core::new(None, None, b'I', 1 << 20, 100_000);
        let (mut to_up, mut to_client) = (BytesMut::new(), BytesMut::new());
        let (mut c_buf, mut u_buf) = (BytesMut::new(), BytesMut::new());
        g.bench_function(name, |b| {
            b.iter(|| {
                c_buf.extend_from_slice(&cin);
                u_buf.extend_from_slice(&uin);
                let _ = core.on_client_data(&mut c_buf, &mut to_up);
                let _ = core.on_upstream_data(&mut u_buf, &mut to_client);
                to_up.clear();
                to_client.clear();
                black_box(core.state.tx_status)
            })
        });
    }
    g.finish();
}

/// What psycopg 3 and Django send per query: an unnamed Parse, Bind,
/// Describe of the portal, Execute, Sync.
fn orm_select() -> BytesMut {
    let mut b = BytesMut::new();
    msg(
        &mut b,
        b'P',
        b"\0SELECT \"auth_user\".\"id\", \"auth_user\".\"username\" FROM \"auth_user\" WHERE \"auth_user\".\"id\" = $1 LIMIT 21\0\0\x01\0\0\0\x14",
    );
    msg(
        &mut b,
        b'B',
        b"\0\0\0\x01\0\x01\0\x01\0\0\0\x08\0\0\0\0\0\0\0\x07\0\x01\0\x01",
    );
    msg(&mut b, b'D', b"P\0");
    msg(&mut b, b'E', b"\0\0\0\0\0");
    msg(&mut b, b'S', b"");
    b
}

/// Its answer: ParseComplete, BindComplete, RowDescription, DataRow,
/// CommandComplete, ReadyForQuery.
fn orm_reply() -> BytesMut {
    let mut b = BytesMut::new();
    msg(&mut b, b'1', b"");
    msg(&mut b, b'2', b"");
    msg(
        &mut b,
        b'T',
        b"\0\x02id\0\0\0\x40\0\0\x01\0\0\0\x17\0\x04\xff\xff\xff\xff\0\x01username\0\0\0\x40\0\0\x05\0\0\x04\x13\xff\xff\0\0\0\x9a\0\x01",
    );
    msg(&mut b, b'D', b"\0\x02\0\0\0\x04\0\0\0\x07\0\0\0\x05alice");
    msg(&mut b, b'C', b"SELECT 1\0");
    msg(&mut b, b'Z', b"I");
    b
}

criterion_group!(benches, bench);
criterion_main!(benches);
