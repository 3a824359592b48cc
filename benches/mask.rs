//! Criterion benchmark of the row rewriter: a 6-column DataRow with 2
//! masked columns (text format, and binary), against copying the row's
//! bytes as the relay does for a statement without masked columns.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pgward::mask::rewrite::{Format, RowRewriter};
use pgward::mask::{ColumnPlan, MaskFn, RowPlan};

fn row(values: &[&[u8]]) -> Vec<u8> {
    let mut b = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v);
    }
    b
}

fn plan() -> RowPlan {
    let col = |mask| ColumnPlan {
        name: "c".into(),
        sources: Vec::new(),
        mask,
        mask_nulls: false,
    };
    RowPlan {
        columns: vec![
            col(None),
            col(None),
            col(Some(MaskFn::Email)),
            col(Some(MaskFn::Partial { first: 0, last: 4 })),
            col(None),
            col(None),
        ],
    }
}

// id int4, name text, email text, ssn text, created timestamptz, note text
const TYPES: [u32; 6] = [23, 25, 25, 25, 1184, 25];

fn bench(c: &mut Criterion) {
    let text = row(&[
        b"123456",
        b"Alice Example",
        b"alice.example@example.com",
        b"078-05-1120",
        b"2026-12-08 00:40:24.123456+00",
        b"a note of some forty bytes, as rows have",
    ]);
    let binary = row(&[
        &123456i32.to_be_bytes(),
        b"Alice Example",
        b"alice.example@example.com",
        b"078-05-1120",
        &851_990_424_123_456i64.to_be_bytes(),
        b"a note of some forty bytes, as rows have",
    ]);
    let mut g = c.benchmark_group("datarow_6_cols");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    g.bench_function("byte_copy", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&text));
            black_box(&out);
        })
    });
    let rw = RowRewriter::new(&plan(), &TYPES, &[Format::Text], None).expect("plan fits");
    g.bench_function("mask_2_text", |b| {
        b.iter(|| {
            rw.rewrite_data_row(black_box(&text), &mut out)
                .expect("a well-formed row");
            black_box(&out);
        })
    });
    let rw = RowRewriter::new(&plan(), &TYPES, &[Format::Binary], None).expect("plan fits");
    g.bench_function("mask_2_binary", |b| {
        b.iter(|| {
            rw.rewrite_data_row(black_box(&binary), &mut out)
                .expect("a well-formed row");
            black_box(&out);
        })
    });
    let redact = RowPlan {
        columns: plan()
            .columns
            .into_iter()
            .map(|c| ColumnPlan {
                mask: c.mask.map(|_| MaskFn::Redact),
                ..c
            })
            .collect(),
    };
    let rw = RowRewriter::new(&redact, &TYPES, &[Format::Text], None).expect("plan fits");
    g.bench_function("redact_2_text", |b| {
        b.iter(|| {
            rw.rewrite_data_row(black_box(&text), &mut out)
                .expect("a well-formed row");
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
