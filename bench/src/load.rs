//! The service's database calls, without the service, under timed load.
//!
//! Each call mirrors `service/src/repository.rs`: same filter, projection,
//! sort, batch size and write concern, and the documents are deserialized
//! into structs as the service does. What the service adds on top (HTTP,
//! JSON, validation, logs) is exactly what this baseline leaves out.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use hdrhistogram::Histogram;
use mongodb::bson::doc;
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Collection};
use serde::{Deserialize, Serialize};

use crate::Operation;

/// The stored book, as the service stores it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Book {
    #[serde(rename = "_id")]
    id: i32,
    title: String,
    author: String,
    #[serde(default)]
    description: String,
}

/// What the list reads of each book.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // read to pay for deserializing, as the service does
struct Summary {
    #[serde(rename = "_id")]
    id: i32,
    title: String,
    author: String,
}

/// The book that PUT writes: the same fields and text as the HTTP load's
/// (`bench/wrk/books.lua`) and the seed's (`scripts/bench.sh`).
fn book(id: i32) -> Book {
    Book { id, title: format!("Book {id}"), author: format!("Author {id}"), description: DESCRIPTION.to_owned() }
}

const DESCRIPTION: &str =
    "A book written for the benchmark; its description is about as long as a real one, a couple of sentences of plain text.";

/// The service's batch size for the list (repository.rs): the same number
/// of round trips per list, unless `--list-batch-size` says otherwise.
pub const LIST_BATCH_SIZE: u32 = 256;

/// One operation never waits longer than this: a database that stops
/// answering turns into errors, not a hung benchmark.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
pub struct Plan {
    pub op: Operation,
    pub books: u32,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// The list's cursor batch size.
    pub list_batch_size: u32,
}

pub struct Report {
    /// The measured window: operations are counted when they complete within it.
    pub window: Duration,
    pub errors: u64,
    /// Latency of successful operations, in microseconds.
    latency: Histogram<u64>,
}

impl Report {
    pub fn ops(&self) -> u64 {
        self.latency.len()
    }
    pub fn ops_per_s(&self) -> f64 {
        self.ops() as f64 / self.window.as_secs_f64()
    }
    pub fn p50_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.50) as f64 / 1000.0
    }
    pub fn p99_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.99) as f64 / 1000.0
    }
    pub fn p999_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.999) as f64 / 1000.0
    }
}

/// The client as the service builds it: default pool (as many connections
/// as the service may use), a majority journaled write concern, and server
/// selection bounded so that a database that is down fails fast.
pub async fn connect(uri: &str, db: &str, collection: &str) -> anyhow::Result<(Client, Collection<Book>)> {
    let mut options = ClientOptions::parse(uri).await.context("--uri is not a valid MongoDB URI")?;
    options.app_name = Some("books-bench".to_owned());
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.write_concern = Some(WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build());
    let client = Client::with_options(options)?;
    let database = client.database(db);
    database.run_command(doc! { "ping": 1 }).await.with_context(|| format!("the database at {uri} does not answer"))?;
    Ok((client, database.collection(collection)))
}

/// Replaces what the collection holds with books 1..=`count`, the same
/// books as the seed through the API writes, 1,000 per `insert_many`: a
/// large collection (100,000 books) in seconds rather than minutes of PUTs.
pub async fn seed(books: &Collection<Book>, count: u32) -> anyhow::Result<()> {
    books.drop().await.context("emptying the collection")?;
    let last = i32::try_from(count).context("--books: at most 2147483647")?;
    let ids: Vec<i32> = (1..=last).collect();
    for chunk in ids.chunks(1000) {
        books.insert_many(chunk.iter().map(|&id| book(id))).await.context("writing the books")?;
    }
    let stored = books.count_documents(doc! {}).await.context("counting the books written")?;
    anyhow::ensure!(stored == u64::from(count), "the collection holds {stored} books after the seed, expected {count}");
    Ok(())
}

/// Warms up, then runs the measured load and merges every task's samples.
/// Counted like wrk counts: operations completed within the window, over
/// the window's length; those still in flight at its end finish (so they do
/// not load what runs next) but are not counted.
pub async fn run(books: &Collection<Book>, plan: &Plan) -> anyhow::Result<Report> {
    if !plan.warmup.is_zero() {
        phase(books, plan, plan.warmup).await?;
    }
    phase(books, plan, plan.duration).await
}

async fn phase(books: &Collection<Book>, plan: &Plan, duration: Duration) -> anyhow::Result<Report> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> =
        (0..plan.concurrency).map(|task| tokio::spawn(worker(books.clone(), *plan, task, deadline))).collect();
    let mut latency = new_histogram();
    let mut errors = 0;
    for task in tasks {
        let (samples, task_errors) = task.await.context("a load task panicked")?;
        latency.add(samples).context("merging latency samples")?;
        errors += task_errors;
    }
    Ok(Report { window: duration, errors, latency })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits: the same precision as wrk's.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One task: one operation in flight at a time until the deadline. Task k
/// starts at book k+1 and steps by the task count, so tasks spread over the
/// collection the way the HTTP load does.
async fn worker(books: Collection<Book>, plan: Plan, task: usize, deadline: Instant) -> (Histogram<u64>, u64) {
    let (op, count, tasks) = (plan.op, plan.books, plan.concurrency);
    let mut latency = new_histogram();
    let mut errors = 0u64;
    let mut n = task as u64;
    while Instant::now() < deadline {
        let id = (n % u64::from(count)) as i32 + 1;
        n += tasks as u64;
        let started = Instant::now();
        let result = match tokio::time::timeout(OP_TIMEOUT, once(&books, op, id, count, plan.list_batch_size)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("no answer within {OP_TIMEOUT:?}")),
        };
        if Instant::now() > deadline {
            break;
        }
        match result {
            Ok(()) => latency.saturating_record(started.elapsed().as_micros() as u64),
            Err(e) => {
                // The first error says what is wrong; the count says how often.
                if errors == 0 {
                    eprintln!("books-bench: task {task}: {op:?} _id {id}: {e:#}");
                }
                errors += 1;
            }
        }
    }
    (latency, errors)
}

/// One operation, checked: a missing book or a short list is an error, so a
/// badly seeded collection cannot pass for a fast one.
async fn once(books: &Collection<Book>, op: Operation, id: i32, count: u32, batch_size: u32) -> anyhow::Result<()> {
    match op {
        Operation::Get => {
            books.find_one(doc! { "_id": id }).await?.with_context(|| format!("no book with _id {id}"))?;
        }
        Operation::List => {
            let summaries = books.clone_with_type::<Summary>();
            let cursor = summaries
                .find(doc! {})
                .projection(doc! { "_id": 1, "title": 1, "author": 1 })
                .sort(doc! { "_id": 1 })
                .batch_size(batch_size)
                .await?;
            // Streamed, one book at a time, like the service's response body.
            let seen = cursor.try_fold(0u32, |n, _summary| async move { Ok(n + 1) }).await?;
            anyhow::ensure!(seen == count, "the list returned {seen} books, expected {count}");
        }
        Operation::Put => {
            books.replace_one(doc! { "_id": id }, book(id)).upsert(true).await?;
        }
    }
    Ok(())
}
