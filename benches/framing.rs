//! Criterion benchmarks of the relay's per-message work: finding frame
//! boundaries and recording protocol state, for pgbench-shaped traffic.

use bytes::{BufMut, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pgward::protocol::frame;
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
