//! The Arrow schema of the audit log, and conversion of events to and from
//! record batches. Columns follow the event's canonical order.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, FixedSizeBinaryArray, FixedSizeBinaryBuilder,
    Int64Array, Int64Builder, ListArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::event::{Event, Kind, List, Text, LIST_COLUMNS, SCHEMA_VERSION, TEXT_COLUMNS};

/// Schema metadata key holding `SCHEMA_VERSION`.
pub const VERSION_KEY: &str = "pgward.audit.schema_version";

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// The one schema every audit file has.
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("kind", DataType::Utf8, false),
    ];
    fields.extend(
        TEXT_COLUMNS
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, true)),
    );
    fields.push(Field::new("tls", DataType::Boolean, true));
    fields.push(Field::new("rows", DataType::Int64, true));
    fields.push(Field::new("duration_us", DataType::Int64, true));
    fields.extend(
        LIST_COLUMNS
            .iter()
            .map(|name| Field::new(*name, list_type(), true)),
    );
    fields.push(Field::new(
        "prev_hash",
        DataType::FixedSizeBinary(32),
        false,
    ));
    fields.push(Field::new("hash", DataType::FixedSizeBinary(32), false));
    let metadata =
        std::collections::HashMap::from([(VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Events as one record batch of `schema()`.
pub fn to_batch(events: &[Event]) -> Result<RecordBatch, String> {
    let n = events.len();
    let seq = UInt64Array::from_iter_values(events.iter().map(|e| e.seq));
    let time = TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.time_us))
        .with_timezone("UTC");
    let kind = StringArray::from_iter_values(events.iter().map(|e| e.kind.as_str()));
    let mut columns: Vec<ArrayRef> = vec![Arc::new(seq), Arc::new(time), Arc::new(kind)];
    // One pass over the events fills every column's builder.
    let mut texts: Vec<StringBuilder> = (0..TEXT_COLUMNS.len())
        .map(|_| StringBuilder::with_capacity(n, 0))
        .collect();
    let mut tls = BooleanBuilder::with_capacity(n);
    let mut rows = Int64Builder::with_capacity(n);
    let mut duration = Int64Builder::with_capacity(n);
    let mut lists: Vec<ListBuilder<StringBuilder>> = (0..LIST_COLUMNS.len())
        .map(|_| ListBuilder::with_capacity(StringBuilder::new(), n))
        .collect();
    for e in events {
        for (b, t) in texts.iter_mut().zip(e.texts()) {
            b.append_option(t.as_deref());
        }
        tls.append_option(e.tls);
        rows.append_option(e.rows);
        duration.append_option(e.duration_us);
        for (b, l) in lists.iter_mut().zip(e.lists()) {
            match l {
                None => b.append(false),
                Some(items) => {
                    for item in items.iter() {
                        b.values().append_option(item.as_deref());
                    }
                    b.append(true);
                }
            }
        }
    }
    columns.extend(texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(tls.finish()));
    columns.push(Arc::new(rows.finish()));
    columns.push(Arc::new(duration.finish()));
    columns.extend(lists.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    for pick in [|e: &Event| e.prev_hash, |e: &Event| e.hash] {
        let mut b = FixedSizeBinaryBuilder::with_capacity(n, 32);
        for e in events {
            b.append_value(pick(e)).map_err(|e| e.to_string())?;
        }
        columns.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(schema(), columns).map_err(|e| format!("building a record batch: {e}"))
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("column {name} is missing"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has the wrong type"))
}

fn opt_str(a: &StringArray, i: usize) -> Text {
    a.is_valid(i).then(|| a.value(i).into())
}

fn opt_list(a: &ListArray, i: usize) -> Result<List, String> {
    if a.is_null(i) {
        return Ok(None);
    }
    let values = a.value(i);
    let strings = values
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("a list column does not hold strings")?;
    Ok(Some(
        (0..strings.len()).map(|j| opt_str(strings, j)).collect(),
    ))
}

/// Events from a record batch of `schema()`; a batch of another shape is
/// an error naming the column.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Event>, String> {
    let seq = column::<UInt64Array>(batch, "seq")?;
    let time = column::<TimestampMicrosecondArray>(batch, "time")?;
    let kind = column::<StringArray>(batch, "kind")?;
    let texts = TEXT_COLUMNS
        .iter()
        .map(|c| column::<StringArray>(batch, c))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = column::<BooleanArray>(batch, "tls")?;
    let rows = column::<Int64Array>(batch, "rows")?;
    let duration = column::<Int64Array>(batch, "duration_us")?;
    let lists = LIST_COLUMNS
        .iter()
        .map(|c| column::<ListArray>(batch, c))
        .collect::<Result<Vec<_>, _>>()?;
    let prev = column::<FixedSizeBinaryArray>(batch, "prev_hash")?;
    let hash = column::<FixedSizeBinaryArray>(batch, "hash")?;
    let hash_at = |a: &FixedSizeBinaryArray, i: usize| -> Result<[u8; 32], String> {
        a.value(i)
            .try_into()
            .map_err(|_| "a hash is not 32 bytes".to_string())
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let k = Kind::parse(kind.value(i))
            .ok_or_else(|| format!("unknown event kind {:?}", kind.value(i)))?;
        let mut e = Event::new(k, time.value(i));
        e.seq = seq.value(i);
        for (slot, col) in e.texts_mut().into_iter().zip(&texts) {
            *slot = opt_str(col, i);
        }
        e.tls = tls.is_valid(i).then(|| tls.value(i));
        e.rows = rows.is_valid(i).then(|| rows.value(i));
        e.duration_us = duration.is_valid(i).then(|| duration.value(i));
        for (slot, col) in e.lists_mut().into_iter().zip(&lists) {
            *slot = opt_list(col, i)?;
        }
        e.prev_hash = hash_at(prev, i)?;
        e.hash = hash_at(hash, i)?;
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::sample;

    #[test]
    fn batches_round_trip_every_column() {
        let mut events: Vec<Event> = (1..=3).map(sample).collect();
        events[1].tls = None;
        events[1].parameters = None;
        events[2].kind = Kind::SessionEnd;
        events[2].detail = Some("".into());
        let mut scratch = Vec::new();
        let mut prev = [0; 32];
        for (i, e) in events.iter_mut().enumerate() {
            e.seal(i as u64 + 1, prev, &mut scratch);
            prev = e.hash;
        }
        let batch = to_batch(&events).unwrap();
        assert_eq!(batch.schema(), schema());
        assert_eq!(from_batch(&batch).unwrap(), events);
    }
}
