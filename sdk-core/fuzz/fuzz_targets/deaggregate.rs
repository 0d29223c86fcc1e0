//! The de-aggregator on arbitrary bytes: it must never panic, and whatever it decodes must
//! re-encode to an aggregate that decodes to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_core::kpl::{self, AggregateBuilder, KplError};

fuzz_target!(|data: &[u8]| {
    match kpl::deaggregate("pk", None, data) {
        Ok(records) if kpl::is_aggregate(data) => {
            let mut builder = AggregateBuilder::new(usize::MAX);
            for record in &records {
                builder.add(record.partition_key, record.explicit_hash_key, record.data);
            }
            let rebuilt = builder.finish();
            let again = kpl::deaggregate("pk", None, &rebuilt).expect("re-encoded aggregate");
            assert_eq!(again, records);
        }
        Ok(records) => {
            assert_eq!(records.len(), 1);
            assert_eq!(kpl::decode(data), Err(KplError::BadMagic));
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
