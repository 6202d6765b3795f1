//! Reading back the recent past of one input partition, to rebuild the duplicate window when a
//! replica takes over a partition (see [`crate::dedup`]). The input topic is the source of
//! truth: every record before the committed offset was processed, and its `RawMessage`
//! carries the sender and control id.

use crate::dedup::{DedupKey, Fingerprint};
use bus::body_reader::BodyReader;
use bus::{AvroSerde, BusConfig};
use canonical::raw::RawMessage;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read back {topic}[{partition}]: {detail}")]
    Kafka { topic: String, partition: i32, detail: String },
}

/// The dedup key of a raw message, when it has a control id to dedup on.
pub fn dedup_key(raw: &RawMessage) -> Option<DedupKey> {
    let control_id = raw.control_id.clone().filter(|c| !c.trim().is_empty())?;
    Some(DedupKey {
        tenant: raw.tenant.clone(),
        application: raw.sender.application.clone(),
        facility: raw.sender.facility.clone(),
        control_id,
    })
}

/// What the window keeps of a raw message: (received at ms, its key's fingerprint), when it
/// has a control id to dedup on.
fn window_entry(raw: &RawMessage) -> Option<(i64, Fingerprint)> {
    dedup_key(raw).map(|k| (raw.received_at / 1000, k.fingerprint()))
}

/// [`window_entry`] read straight from a body written with `RawMessage`'s own schema: the
/// fields are borrowed, not copied, and the payload is skipped. A window is ~100 k records
/// read at once, and decoding each whole copied its payload and every field only to drop them.
/// The whole body is still walked and checked, so a record is counted exactly when the full
/// decoder accepts it.
fn read_window_entry(body: &[u8]) -> Result<Option<(i64, Fingerprint)>, String> {
    let mut r = BodyReader::new(body);
    r.str("id")?;
    let tenant = r.str("tenant")?;
    let received_at = r.long("received_at")?;
    r.symbol("channel", 3)?;
    r.opt_str("peer")?;
    let application = r.str("sender.application")?;
    let facility = r.str("sender.facility")?;
    if r.present("receiver")? {
        r.str("receiver.application")?;
        r.str("receiver.facility")?;
    }
    r.opt_str("message_type")?;
    let control_id = r.opt_str("control_id")?;
    r.opt_str("version")?;
    r.opt_str("charset")?;
    r.str("content_type")?;
    r.bytes("payload")?;
    r.finish()?;
    Ok(control_id
        .filter(|c| !c.trim().is_empty())
        .map(|c| (received_at / 1000, Fingerprint::of(tenant, application, facility, c))))
}

/// (offset, received at ms, key's fingerprint) of the records of `topic[partition]` received in
/// the last `window_ms` before offset `up_to` (exclusive), in offset order. Fingerprints, not
/// keys: a window of a busy partition is ~100 k records, and four strings each would make the
/// read-back cost several times the window it rebuilds.
pub async fn read_window(
    bus: &BusConfig,
    serde: &AvroSerde<RawMessage>,
    topic: &str,
    partition: i32,
    up_to: i64,
    window_ms: i64,
) -> Result<Vec<(i64, i64, Fingerprint)>, HistoryError> {
    let err = |detail: String| HistoryError::Kafka { topic: topic.to_string(), partition, detail };
    if up_to <= 0 {
        return Ok(Vec::new());
    }
    let mut cfg = bus::consumer::consumer_client_config(bus, "arteria-normalize-history");
    // An assign-only reader: it never joins the group and never commits.
    cfg.set("enable.auto.commit", "false");
    let consumer: StreamConsumer = cfg.create().map_err(|e| err(e.to_string()))?;
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let since = now_ms.saturating_sub(window_ms);
    let start = {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(since)).map_err(|e| err(e.to_string()))?;
        let c = consumer_for_lookup(bus).map_err(&err)?;
        // Blocking metadata call: off the executor.
        let found = tokio::task::spawn_blocking(move || c.offsets_for_times(tpl, Duration::from_secs(30)))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?;
        match found.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            // No record at or after `since`: nothing in the window.
            _ => return Ok(Vec::new()),
        }
    };
    if start >= up_to {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(|e| err(e.to_string()))?;
    consumer.assign(&tpl).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .map_err(|_| {
                err(format!("no record at offset {} within 30 s", out.last().map_or(start, |(o, _, _)| o + 1)))
            })?
            .map_err(|e| err(e.to_string()))?;
        let offset = m.offset();
        if offset >= up_to {
            break;
        }
        // A record that does not decode was dead-lettered when it was processed; skip it.
        if let Some(v) = m.payload()
            && let Ok(Some((at_ms, key))) = serde.decode_part(v, read_window_entry, |raw| window_entry(&raw)).await
        {
            out.push((offset, at_ms, key));
        }
        if offset + 1 >= up_to {
            break;
        }
    }
    Ok(out)
}

fn consumer_for_lookup(bus: &BusConfig) -> Result<rdkafka::consumer::BaseConsumer, String> {
    bus::consumer::consumer_client_config(bus, "arteria-normalize-history").create().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::AvroSchema;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use canonical::raw::{Channel, SenderId};

    fn raw(control_id: Option<&str>, receiver: bool, peer: Option<&str>, channel: Channel) -> RawMessage {
        RawMessage {
            id: "0193a1b2-0000-7000-8000-000000000001".into(),
            tenant: "general-hospital".into(),
            received_at: 1_764_000_000_123_456,
            channel,
            peer: peer.map(str::to_string),
            sender: SenderId { application: "LAB".into(), facility: "MAIN ü".into() },
            receiver: receiver.then(|| SenderId { application: "ARTERIA".into(), facility: "".into() }),
            message_type: Some("ORU^R01^ORU_R01".into()),
            control_id: control_id.map(str::to_string),
            version: Some("2.5.1".into()),
            charset: None,
            content_type: "application/hl7-v2".into(),
            payload: b"MSH|^~\\&|LAB|MAIN|||20261126||ORU^R01|C-1|P|2.5.1\r".to_vec(),
        }
    }

    fn body(r: &RawMessage) -> Vec<u8> {
        let schema = RawMessage::get_schema();
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(apache_avro::to_value(r).unwrap())
            .unwrap()
    }

    fn full_decode(b: &[u8]) -> Result<RawMessage, apache_avro::Error> {
        let schema = RawMessage::get_schema();
        GenericDatumReader::builder(&schema).build()?.read_deser::<RawMessage>(&mut &b[..])
    }

    fn samples() -> Vec<RawMessage> {
        vec![
            raw(Some("C-1"), true, Some("127.0.0.1:40000"), Channel::Mllp),
            raw(Some("C-2"), false, None, Channel::Http),
            raw(Some("  "), true, None, Channel::File),
            raw(None, false, Some("10.0.0.1:1"), Channel::Mllp),
        ]
    }

    #[test]
    fn reads_the_entry_the_full_decode_gives() {
        for r in samples() {
            let b = body(&r);
            let decoded = full_decode(&b).unwrap();
            assert_eq!(decoded, r);
            assert_eq!(read_window_entry(&b).unwrap(), window_entry(&r), "{:?}", r.control_id);
        }
        // The entry is the dedup key's: same fingerprint, received-at in milliseconds.
        let r = &samples()[0];
        assert_eq!(
            read_window_entry(&body(r)).unwrap(),
            Some((1_764_000_000_123, dedup_key(r).unwrap().fingerprint()))
        );
        // A blank or missing control id is not deduplicated, as in processing.
        assert_eq!(read_window_entry(&body(&samples()[2])).unwrap(), None);
        assert_eq!(read_window_entry(&body(&samples()[3])).unwrap(), None);
    }

    #[test]
    fn a_body_the_full_decoder_refuses_is_refused() {
        for r in samples() {
            let b = body(&r);
            for cut in 0..b.len() {
                assert!(read_window_entry(&b[..cut]).is_err(), "cut at {cut}");
                assert!(full_decode(&b[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(read_window_entry(&longer).unwrap_err(), "1 trailing bytes after the record");
        }
        // A channel outside the enum.
        let mut b = body(&samples()[1]);
        let mut r = BodyReader::new(&b);
        r.str("id").unwrap();
        r.str("tenant").unwrap();
        r.long("received_at").unwrap();
        let channel_at = r.position();
        assert_eq!(b[channel_at], 2, "HTTP is symbol 1");
        b[channel_at] = 6;
        assert!(read_window_entry(&b).unwrap_err().starts_with("channel: symbol 3"));
    }

    #[test]
    fn never_panics_on_any_bytes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..20_000usize {
            let mut v = Vec::with_capacity(n % 96);
            for _ in 0..n % 96 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            let _ = read_window_entry(&v);
        }
    }
}
