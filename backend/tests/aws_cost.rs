//! The counts behind docs/COST.md, on a fixed workload, against moto and a stand-in of the Lambda
//! `Invoke` API: clients send batches of 20 events through the ingest function into a 2-shard
//! stream; the router function takes the stream's records in batches of 500 (the template's
//! `BatchSize`) and routes by the article's rules (`rules-seed.json`): `mixpanel` and `hubspotcrm`
//! by asynchronous invoke, `datawarehouse` through an SQS queue. The same counts for the article's
//! design (one Kinesis record per event, router batch size 1, one invoke per event per
//! destination) are computed from the same events and rules.
//!
//! The ingest runs twice: as on-demand Lambda runs it (one request at a time per instance), and
//! as Lambda Managed Instances run it (one execution environment serving
//! `PerExecutionEnvironmentMaxConcurrency` = 16 requests at once, whose events share records:
//! group commit, `kinesis_sink`). Both compress records (the default).
//!
//! `cargo test -p tributary-backend --features aws --test aws_cost -- --nocapture` prints the
//! table per million events.

#![cfg(feature = "aws")]
#![allow(clippy::print_stderr)]

mod aws_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use serde_json::{Value, json};
use tributary_backend::aws::SqsDeadLetterQueue;
use tributary_backend::aws::destinations::Destinations;
use tributary_backend::aws::ingest::{self, IngestSettings};
use tributary_backend::aws::kinesis_sink::{KinesisSink, StreamWrites};
use tributary_backend::aws::router::RouterFunction;
use tributary_backend::aws::rules_source::S3Rules;
use tributary_backend::routing::RoutingRules;

use aws_common::{
    Queue, batch_request, call_ingest, create_queue, create_stream, delete_stream, moto_url,
    queue_attribute, read_stream, s3_client, sdk_config, unique,
};

/// Events in the workload.
const EVENTS: usize = 4_000;
/// Events per client request.
const BATCH: usize = 20;
/// Kinesis bills PUT payload units of 25 KB.
const PUT_UNIT_BYTES: usize = 25 * 1024;
/// The router's event-source mapping `BatchSize` in backend/template.yaml.
const ROUTER_BATCH: usize = 500;
/// The connector queue's event-source mapping `BatchSize`.
const CONNECTOR_SQS_BATCH: usize = 10;
const NAMES: [&str; 9] = [
    "login",
    "logout",
    "registration",
    "page_view",
    "search",
    "button_click",
    "page_scroll",
    "email_sent",
    "email_open",
];

/// The workload's event `i`: the demo traffic's names and data, from a browser client
/// (`batch` = the client's request) with the context a web SDK sends.
fn event(i: usize) -> Value {
    let name = if i % 10 == 9 {
        format!("event-{i}")
    } else {
        NAMES[i % 9].to_owned()
    };
    let client = i / BATCH % 200;
    json!({
        "id": format!("0192f0c4-1b2a-7c3d-8e4f-{i:012}"),
        "name": name,
        "data": {"square": i * i},
        "timestamp": "2026-11-27T10:00:00.000Z",
        "anonymous_id": format!("3f6c2a1e-8b4d-4e7f-9a0b-{client:012}"),
        "user_id": format!("demo-user-{}", client % 10),
        "source": "web",
        "context": {
            "library": {"name": "@tributary/web", "version": "0.1.0"},
            "page": {"path": format!("/products/{}", i % 50), "title": "Product", "referrer": "https://www.example.com/"},
            "locale": "en-GB", "timezone": "Europe/London",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
            "traits": {"email": format!("demo-user-{}@example.com", client % 10)}
        }
    })
}

async fn lambda_counter() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), calls)
}

#[derive(Debug, Default)]
struct Counts {
    ingest_invocations: usize,
    kinesis_records: usize,
    put_units: usize,
    router_invocations: usize,
    connector_invokes: usize,
    connector_sqs_invocations: usize,
    sqs_requests: usize,
}

/// One count of a [`Counts`].
type CountOf = fn(&Counts) -> usize;

impl Counts {
    fn lambda_invocations(&self) -> usize {
        self.ingest_invocations
            + self.router_invocations
            + self.connector_invokes
            + self.connector_sqs_invocations
    }
}

/// Requests one Managed Instances execution environment serves at once (the template's
/// `IngestMaxConcurrency`).
const MANAGED_CONCURRENCY: usize = 16;

/// Sends the workload through one ingest instance serving `concurrency` requests at once; returns
/// the invocations (one per client request).
async fn ingest(
    config: &aws_config::SdkConfig,
    stream: &str,
    workload: &[Value],
    concurrency: usize,
) -> usize {
    let sink = KinesisSink::new(
        config,
        stream,
        Duration::from_secs(5),
        StreamWrites::for_concurrency(concurrency),
    )
    .await
    .unwrap();
    let router = ingest::router(
        Arc::new(sink),
        &IngestSettings {
            write_keys: vec!["k".into()],
            allowed_origins: vec!["*".into()],
            rate_limit_per_key: 0,
            ip_mode: Default::default(),
        },
    );
    let requests: Vec<Value> = workload
        .chunks(BATCH)
        .map(|batch| batch_request(batch, "k"))
        .collect();
    let invocations = requests.len();
    let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let queue = queue.clone();
        let router = router.clone();
        workers.spawn(async move {
            loop {
                let Some(request) = queue.lock().unwrap().next() else {
                    return;
                };
                let response = call_ingest(&router, &request).await;
                assert_eq!(response["statusCode"], 200, "{response:#}");
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    invocations
}

/// Our counts for the workload with an ingest serving `concurrency` requests at once.
async fn measure(
    config: &aws_config::SdkConfig,
    workload: &[Value],
    seed: &str,
    concurrency: usize,
) -> Counts {
    let kinesis = aws_sdk_kinesis::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let stream = create_stream(&kinesis, "cost", 2).await;
    let mut ours = Counts {
        ingest_invocations: ingest(config, &stream, workload, concurrency).await,
        ..Counts::default()
    };

    // The stream's records, per shard, as the router's event-source mapping delivers them.
    let mut shard_records: Vec<Vec<Value>> = Vec::new();
    for (shard_id, stored) in read_stream(&kinesis, &stream).await {
        let mut records = Vec::new();
        for record in &stored {
            let size = record.data().as_ref().len() + record.partition_key().len();
            ours.kinesis_records += 1;
            ours.put_units += size.div_ceil(PUT_UNIT_BYTES);
            records.push(json!({
                "kinesis": {"partitionKey": record.partition_key(),
                            "sequenceNumber": record.sequence_number(),
                            "data": base64::engine::general_purpose::STANDARD.encode(record.data().as_ref()),
                            "approximateArrivalTimestamp": 1_795_000_000.0},
                "eventID": format!("{shard_id}:{}", record.sequence_number()),
                "eventSource": "aws:kinesis"
            }));
        }
        shard_records.push(records);
    }

    // The router, with the article's rules: two destinations by invoke, one through SQS.
    let (lambda, invokes) = lambda_counter().await;
    let Queue {
        url: queue_url,
        arn: queue_arn,
    } = create_queue(&sqs, "cost-warehouse").await;
    let rules = seed
        .replacen(
            "arn:aws:lambda:region:account-id:function:function-name:prod",
            "arn:aws:lambda:us-east-1:123456789012:function:mixpanel",
            1,
        )
        .replacen(
            "arn:aws:lambda:region:account-id:function:function-name:prod",
            "arn:aws:lambda:us-east-1:123456789012:function:hubspot",
            1,
        )
        .replacen(
            "arn:aws:lambda:region:account-id:function:function-name:prod",
            &queue_arn,
            1,
        );
    let s3 = s3_client(config);
    let bucket = unique("cost-rules");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("rules.json")
        .body(rules.into_bytes().into())
        .send()
        .await
        .unwrap();
    let dlq = create_queue(&sqs, "cost-dlq").await.url;
    let lambda_config = aws_sdk_lambda::config::Builder::from(&sdk_config(&lambda).await).build();
    let router_function = RouterFunction::new(
        S3Rules::new(s3, bucket, "rules.json".into()),
        Destinations::new(
            aws_sdk_lambda::Client::from_conf(lambda_config),
            sqs.clone(),
        ),
        SqsDeadLetterQueue::new(sqs.clone(), dlq),
    );
    let mut routed_events = 0;
    let mut requests = 0;
    for records in &shard_records {
        for batch in records.chunks(ROUTER_BATCH) {
            let event: KinesisEvent = serde_json::from_value(json!({"Records": batch})).unwrap();
            let report = router_function.route(&event).await.unwrap();
            assert!(report.failed_sequence_numbers.is_empty());
            routed_events += report.events;
            requests += report.requests;
            ours.router_invocations += 1;
        }
    }
    assert_eq!(routed_events, EVENTS);
    ours.connector_invokes = invokes.load(Ordering::SeqCst);
    ours.sqs_requests = requests - ours.connector_invokes;
    let messages: usize = queue_attribute(
        &sqs,
        &queue_url,
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
    )
    .await
    .parse()
    .unwrap();
    ours.connector_sqs_invocations = messages.div_ceil(CONNECTOR_SQS_BATCH);
    // The connector's queue: one ReceiveMessage and one DeleteMessageBatch per invocation.
    ours.sqs_requests += 2 * ours.connector_sqs_invocations;

    delete_stream(&kinesis, &stream).await;
    ours
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_counts_per_million_events() {
    let Some(moto) = moto_url() else { return };
    let config = sdk_config(&moto).await;
    let workload: Vec<Value> = (0..EVENTS).map(event).collect();
    let seed = std::fs::read_to_string(format!(
        "{}/tests/data/rules-seed.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let article_rules = RoutingRules::parse(&seed, "rules-seed.json").unwrap();
    let on_demand = measure(&config, &workload, &seed, 1).await;
    let managed = measure(&config, &workload, &seed, MANAGED_CONCURRENCY).await;

    // The article's design on the same events and rules.
    let article = Counts {
        ingest_invocations: EVENTS.div_ceil(BATCH),
        kinesis_records: EVENTS,
        put_units: workload
            .iter()
            .map(|event| {
                let key = event["anonymous_id"].as_str().unwrap().len();
                (event.to_string().len() + key).div_ceil(PUT_UNIT_BYTES)
            })
            .sum(),
        router_invocations: EVENTS,
        connector_invokes: workload
            .iter()
            .map(|event| {
                article_rules
                    .destinations_for(event["name"].as_str().unwrap())
                    .len()
            })
            .sum(),
        connector_sqs_invocations: 0,
        sqs_requests: 0,
    };

    let per_million = |count: usize| count as f64 * 1_000_000.0 / EVENTS as f64;
    let ratio = |ours: usize, article: usize| {
        if ours == 0 || article == 0 {
            "-".to_owned()
        } else {
            format!("1/{:.0}", article as f64 / ours as f64)
        }
    };
    eprintln!(
        "\nper million events ({EVENTS} events measured, batches of {BATCH}, 2 shards):\n\
         | count | on-demand ingest | ratio | Managed Instances ingest ({MANAGED_CONCURRENCY} at once) | ratio | article |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let rows: [(&str, CountOf); 8] = [
        ("ingest invocations", |c| c.ingest_invocations),
        ("Kinesis records", |c| c.kinesis_records),
        ("Kinesis PUT payload units", |c| c.put_units),
        ("router invocations", |c| c.router_invocations),
        ("connector invocations (async invoke)", |c| {
            c.connector_invokes
        }),
        ("connector invocations (SQS)", |c| {
            c.connector_sqs_invocations
        }),
        ("Lambda invocations, all", Counts::lambda_invocations),
        ("SQS requests", |c| c.sqs_requests),
    ];
    for (label, count) in rows {
        let (on_demand, managed, article) = (count(&on_demand), count(&managed), count(&article));
        eprintln!(
            "| {label} | {:.0} | {} | {:.0} | {} | {:.0} |",
            per_million(on_demand),
            ratio(on_demand, article),
            per_million(managed),
            ratio(managed, article),
            per_million(article)
        );
    }

    // The target: at most 1/50 of the article's Lambda invocations, either way.
    for ours in [&on_demand, &managed] {
        assert!(
            ours.lambda_invocations() * 50 <= article.lambda_invocations(),
            "{ours:?} vs {article:?}"
        );
    }
    // PUT payload units: with requests sharing records (group commit) and compressed records,
    // at most 1/50 of the article's.
    assert!(
        managed.put_units * 50 <= article.put_units,
        "{managed:?} vs {article:?}"
    );
    // One request at a time: the ingest answers each request only once its events are in the
    // stream, so a request of 20 events is at least one record per shard it touches: 1/20 of
    // the article's one record per event is the floor there (docs/COST.md).
    assert!(
        on_demand.put_units * 18 <= article.put_units,
        "{on_demand:?} vs {article:?}"
    );
}
