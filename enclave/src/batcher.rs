//! Dynamic batching of KServe inferences.
//!
//! Each ONNX Runtime session belongs to a worker thread. Validated requests
//! wait in one queue; a free worker takes the oldest and, when the model's
//! first dimension is its batch dimension, every later request whose inputs
//! have the same shape past the first dimension, up to
//! [`Batching::max_rows`] rows in all. It runs them as one call over the
//! concatenated rows and hands each request its own rows of every output,
//! in order.
//!
//! A worker that finds the oldest request queued for less than
//! [`Batching::delay`] waits for more (until the delay is over or the rows
//! reach the bound), but only when that request came less than the delay
//! after the one before it: requests are arriving together, and more are
//! likely. A lone client's request runs at once and pays no delay. With no
//! delay a worker runs at once what is queued, which still merges requests
//! that arrived while the sessions were busy. A request of more rows than
//! the bound runs alone, never split. Workers sleep on a condition
//! variable: no polling.
//!
//! Requests are validated before they are queued, so one request's bad input
//! never reaches its neighbours; an error of a merged call is reported to
//! every request in it, and the workers carry on.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::{ModelMetrics, Waiting};

/// How requests are merged into one model call: part of the measured
/// serving configuration (`--batch-max-rows`, `--batch-delay-us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most rows in one merged call (a single larger request runs alone).
    pub max_rows: usize,
    /// Longest a request waits in the queue for others to join it.
    pub delay: Duration,
}

impl Default for Batching {
    /// 64 rows, 500 µs: the enclave's defaults.
    fn default() -> Self {
        Self {
            max_rows: 64,
            delay: Duration::from_micros(500),
        }
    }
}

/// Tensor elements of one of the datatypes the enclave serves.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// INT32.
    Int32(Vec<i32>),
    /// INT64.
    Int64(Vec<i64>),
    /// FP32.
    Fp32(Vec<f32>),
}

impl Data {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::Int32(v) => v.len(),
            Self::Int64(v) => v.len(),
            Self::Fp32(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn empty_like(&self, capacity: usize) -> Self {
        match self {
            Self::Int32(_) => Self::Int32(Vec::with_capacity(capacity)),
            Self::Int64(_) => Self::Int64(Vec::with_capacity(capacity)),
            Self::Fp32(_) => Self::Fp32(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other`'s elements, which must be of the same datatype.
    fn extend(&mut self, other: &Self) -> Result<(), String> {
        match (self, other) {
            (Self::Int32(a), Self::Int32(b)) => a.extend_from_slice(b),
            (Self::Int64(a), Self::Int64(b)) => a.extend_from_slice(b),
            (Self::Fp32(a), Self::Fp32(b)) => a.extend_from_slice(b),
            _ => return Err("merged requests disagree on an input's datatype".into()),
        }
        Ok(())
    }

    /// The elements in `range`, if within.
    fn slice(&self, range: Range<usize>) -> Option<Self> {
        Some(match self {
            Self::Int32(v) => Self::Int32(v.get(range)?.to_vec()),
            Self::Int64(v) => Self::Int64(v.get(range)?.to_vec()),
            Self::Fp32(v) => Self::Fp32(v.get(range)?.to_vec()),
        })
    }
}

/// A dense tensor: its shape and its elements in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Its shape (the first dimension is the batch's rows).
    pub shape: Vec<usize>,
    /// Its elements.
    pub data: Data,
}

/// One model call: the model's inputs in, its outputs out (both in the
/// model's order). A worker owns one.
pub trait Run: Send + 'static {
    /// Runs the model once.
    fn run(&mut self, inputs: Vec<Array>) -> Result<Vec<Array>, String>;
}

/// A validated request waiting for a worker.
struct Job {
    inputs: Vec<Array>,
    rows: usize,
    /// The input shapes past the batch dimension: requests with equal keys
    /// can be concatenated. `None`: this request always runs alone.
    key: Option<Vec<Vec<usize>>>,
    arrived: Instant,
    /// Whether the request before it arrived less than the delay earlier.
    crowded: bool,
    waiting: Option<Waiting>,
    reply: mpsc::SyncSender<Result<Vec<Array>, String>>,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    last_arrival: Option<Instant>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    batching: Batching,
    metrics: OnceLock<ModelMetrics>,
}

/// The queue and the workers of one model.
pub struct Batcher {
    shared: Arc<Shared>,
    /// Whether the model's inputs and outputs all have their batch as their
    /// first (dynamic) dimension, so that requests can be concatenated.
    mergeable: bool,
    workers: Vec<JoinHandle<()>>,
}

impl Batcher {
    /// Starts one worker thread per runner. `mergeable`: whether the model's
    /// first dimension is the batch in every input and output.
    pub fn start<R: Run>(
        runners: Vec<R>,
        batching: Batching,
        mergeable: bool,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
                last_arrival: None,
            }),
            ready: Condvar::new(),
            batching: Batching {
                max_rows: batching.max_rows.max(1),
                ..batching
            },
            metrics: OnceLock::new(),
        });
        let mut batcher = Self {
            shared: shared.clone(),
            mergeable,
            workers: Vec::new(),
        };
        for (i, mut runner) in runners.into_iter().enumerate() {
            let shared = shared.clone();
            // Dropping `batcher` on an error closes the queue and joins the started workers.
            batcher.workers.push(
                std::thread::Builder::new()
                    .name(format!("infer-{i}"))
                    .spawn(move || {
                        while let Some(batch) = shared.next_batch() {
                            shared.run(&mut runner, batch);
                        }
                    })?,
            );
        }
        Ok(batcher)
    }

    /// Reports each call (rows, requests merged, time) and each request's
    /// wait to `metrics`.
    pub fn observed_by(&self, metrics: ModelMetrics) {
        let _ = self.shared.metrics.set(metrics);
    }

    /// Queues a validated request (its inputs in the model's order, all of
    /// `rows` rows) and waits for its outputs.
    pub fn infer(&self, inputs: Vec<Array>, rows: usize) -> Result<Vec<Array>, String> {
        let key = self.mergeable.then(|| {
            inputs
                .iter()
                .map(|a| a.shape.get(1..).unwrap_or_default().to_vec())
                .collect()
        });
        let (reply, answer) = mpsc::sync_channel(1);
        let waiting = self.shared.metrics.get().map(ModelMetrics::waiting);
        {
            let mut queue = self
                .shared
                .queue
                .lock()
                .map_err(|_| "the inference queue is poisoned".to_string())?;
            if queue.closed || self.workers.is_empty() {
                return Err("the model's inference workers have stopped".into());
            }
            let arrived = Instant::now();
            let crowded = queue
                .last_arrival
                .is_some_and(|last| arrived.duration_since(last) < self.shared.batching.delay);
            queue.last_arrival = Some(arrived);
            queue.jobs.push_back(Job {
                inputs,
                rows: rows.max(1),
                key,
                arrived,
                crowded,
                waiting,
                reply,
            });
        }
        self.shared.ready.notify_all();
        answer
            .recv()
            .map_err(|_| "the inference worker stopped before answering".to_string())?
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.closed = true;
        }
        self.shared.ready.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// The queue positions of the jobs the oldest job runs with (itself
/// first), and their rows: later jobs of the same key, in order, while the
/// rows stay within `max_rows`.
fn plan(jobs: &VecDeque<Job>, max_rows: usize) -> (Vec<usize>, usize) {
    let Some(first) = jobs.front() else {
        return (Vec::new(), 0);
    };
    let (mut picked, mut rows) = (vec![0], first.rows);
    if first.key.is_some() {
        for (i, job) in jobs.iter().enumerate().skip(1) {
            if rows >= max_rows {
                break;
            }
            if job.key == first.key && rows + job.rows <= max_rows {
                picked.push(i);
                rows += job.rows;
            }
        }
    }
    (picked, rows)
}

impl Shared {
    /// Waits for the next batch; `None` once the queue is closed.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut queue = self.queue.lock().ok()?;
        loop {
            if queue.closed {
                return None;
            }
            let Some(oldest) = queue.jobs.front() else {
                queue = self.ready.wait(queue).ok()?;
                continue;
            };
            let (picked, rows) = plan(&queue.jobs, self.batching.max_rows);
            let wait =
                (oldest.arrived + self.batching.delay).saturating_duration_since(Instant::now());
            let worth_waiting = oldest.crowded && oldest.key.is_some();
            if worth_waiting && !wait.is_zero() && rows < self.batching.max_rows {
                queue = self.ready.wait_timeout(queue, wait).ok()?.0;
                continue;
            }
            // Highest position first, so the lower ones stay put.
            let mut batch: Vec<Job> = picked
                .iter()
                .rev()
                .filter_map(|i| queue.jobs.remove(*i))
                .collect();
            batch.reverse();
            if !queue.jobs.is_empty() {
                // Another worker may take the rest.
                self.ready.notify_one();
            }
            return Some(batch);
        }
    }

    /// Runs a batch and answers each of its requests.
    fn run(&self, runner: &mut impl Run, mut batch: Vec<Job>) {
        let rows: usize = batch.iter().map(|j| j.rows).sum();
        for job in &mut batch {
            if let Some(waiting) = job.waiting.take() {
                waiting.done();
            }
        }
        let started = Instant::now();
        let outcome = match batch.as_mut_slice() {
            [job] => runner.run(std::mem::take(&mut job.inputs)),
            jobs => merge(jobs).and_then(|inputs| runner.run(inputs)),
        };
        if let Some(m) = self.metrics.get() {
            m.run(rows, batch.len(), started.elapsed());
        }
        let outputs = match (batch.len(), outcome) {
            (1, outcome) => vec![outcome],
            (_, Ok(outputs)) => split(&outputs, &batch, rows),
            (n, Err(e)) => {
                let e = format!("{e} (in a call merging {n} requests, {rows} rows)");
                vec![Err(e); n]
            }
        };
        for (job, answer) in batch.into_iter().zip(outputs) {
            // The requester may be gone (its connection closed): nothing to do.
            let _ = job.reply.send(answer);
        }
    }
}

/// The jobs' inputs concatenated along the first dimension.
fn merge(jobs: &[Job]) -> Result<Vec<Array>, String> {
    let first = jobs.first().ok_or("an empty batch")?;
    let rows: usize = jobs.iter().map(|j| j.rows).sum();
    first
        .inputs
        .iter()
        .enumerate()
        .map(|(k, head)| {
            let total: usize = jobs
                .iter()
                .filter_map(|j| j.inputs.get(k))
                .map(|a| a.data.len())
                .sum();
            let mut data = head.data.empty_like(total);
            for job in jobs {
                let part = job
                    .inputs
                    .get(k)
                    .ok_or("merged requests disagree on the number of inputs")?;
                data.extend(&part.data)?;
            }
            let mut shape = head.shape.clone();
            if let Some(first) = shape.first_mut() {
                *first = rows;
            }
            Ok(Array { shape, data })
        })
        .collect()
}

/// Each job's rows of every output, in order, or why the outputs cannot be
/// split (each job gets the error).
fn split(outputs: &[Array], jobs: &[Job], rows: usize) -> Vec<Result<Vec<Array>, String>> {
    let mut answers: Vec<Result<Vec<Array>, String>> =
        jobs.iter().map(|_| Ok(Vec::new())).collect();
    for (index, output) in outputs.iter().enumerate() {
        let per_row = match output.shape.first() {
            Some(&n) if n == rows => output.data.len() / rows.max(1),
            _ => {
                let e = format!(
                    "output {index} has shape {:?}, not {rows} rows: the merged call's outputs cannot be split",
                    output.shape
                );
                return jobs.iter().map(|_| Err(e.clone())).collect();
            }
        };
        let mut offset = 0;
        for (job, answer) in jobs.iter().zip(answers.iter_mut()) {
            let range = offset * per_row..(offset + job.rows) * per_row;
            offset += job.rows;
            let mut shape = output.shape.clone();
            if let Some(first) = shape.first_mut() {
                *first = job.rows;
            }
            if let Ok(list) = answer {
                match output.data.slice(range) {
                    Some(data) => list.push(Array { shape, data }),
                    None => *answer = Err(format!("output {index} is shorter than its shape")),
                }
            }
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A model of one INT32 input [N, W] and one FP32 output [N, 1] (each
    /// row's sum): logs each call's rows; fails a call holding the value -1.
    struct Sum {
        calls: Arc<Mutex<Vec<usize>>>,
        hold: Duration,
    }

    impl Run for Sum {
        fn run(&mut self, inputs: Vec<Array>) -> Result<Vec<Array>, String> {
            std::thread::sleep(self.hold);
            let input = inputs.into_iter().next().ok_or("no input")?;
            let Data::Int32(v) = input.data else {
                return Err("not int32".into());
            };
            let rows = input.shape[0];
            self.calls.lock().unwrap().push(rows);
            if v.contains(&-1) {
                return Err("the model failed".into());
            }
            let width = input.shape.get(1).copied().unwrap_or(1);
            let sums = v
                .chunks(width)
                .map(|c| c.iter().sum::<i32>() as f32)
                .collect();
            Ok(vec![Array {
                shape: vec![rows, 1],
                data: Data::Fp32(sums),
            }])
        }
    }

    /// A batcher of `sessions` [`Sum`] models merging up to `max_rows`
    /// rows after up to `delay`; each call takes `hold`.
    fn batcher(
        sessions: usize,
        max_rows: usize,
        delay: Duration,
        hold: Duration,
    ) -> (Arc<Batcher>, Arc<Mutex<Vec<usize>>>) {
        let batching = Batching { max_rows, delay };
        let calls = Arc::new(Mutex::new(Vec::new()));
        let runners = (0..sessions)
            .map(|_| Sum {
                calls: calls.clone(),
                hold,
            })
            .collect();
        (
            Arc::new(Batcher::start(runners, batching, true).unwrap()),
            calls,
        )
    }

    fn request(rows: usize, base: i32) -> Vec<Array> {
        let data = (0..rows as i32 * 2).map(|i| base + i).collect();
        vec![Array {
            shape: vec![rows, 2],
            data: Data::Int32(data),
        }]
    }

    fn expected(rows: usize, base: i32) -> Vec<Array> {
        let sums = (0..rows as i32)
            .map(|r| (2 * (base + 2 * r) + 1) as f32)
            .collect();
        vec![Array {
            shape: vec![rows, 1],
            data: Data::Fp32(sums),
        }]
    }

    /// One request alone, so that the next arrive crowded; its call forgotten.
    fn warm(b: &Batcher, calls: &Mutex<Vec<usize>>) {
        assert_eq!(b.infer(request(1, 7), 1).unwrap(), expected(1, 7));
        calls.lock().unwrap().clear();
    }

    /// `n` requests of `rows(i)` rows sent at once from threads; their answers in order.
    fn concurrently(
        b: &Arc<Batcher>,
        n: usize,
        rows: impl Fn(usize) -> usize,
    ) -> Vec<(usize, i32, Result<Vec<Array>, String>)> {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (b, rows, base) = (b.clone(), rows(i), 1000 * i as i32);
                std::thread::spawn(move || (rows, base, b.infer(request(rows, base), rows)))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn concurrent_requests_are_merged_and_each_gets_its_own_rows() {
        let (b, calls) = batcher(1, 64, Duration::from_millis(50), Duration::ZERO);
        warm(&b, &calls);
        let answers = concurrently(&b, 12, |i| 1 + i % 3);
        for (rows, base, answer) in answers {
            assert_eq!(answer.unwrap(), expected(rows, base));
        }
        let calls = calls.lock().unwrap();
        assert!(calls.len() < 12, "not merged: {calls:?}");
        assert_eq!(calls.iter().sum::<usize>(), 24);
    }

    #[test]
    fn a_lone_request_runs_at_once() {
        let (b, calls) = batcher(1, 64, Duration::from_secs(5), Duration::ZERO);
        let started = Instant::now();
        assert_eq!(b.infer(request(3, 1), 3).unwrap(), expected(3, 1));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(*calls.lock().unwrap(), [3]);
    }

    #[test]
    fn no_delay_still_merges_what_queued_during_a_call() {
        let (b, calls) = batcher(1, 64, Duration::ZERO, Duration::from_millis(30));
        warm(&b, &calls);
        for (rows, base, answer) in concurrently(&b, 8, |_| 1) {
            assert_eq!(answer.unwrap(), expected(rows, base));
        }
        let calls = calls.lock().unwrap();
        assert!(calls.len() < 8, "not merged: {calls:?}");
    }

    #[test]
    fn no_call_exceeds_the_row_bound_and_a_larger_request_runs_alone() {
        let (b, calls) = batcher(2, 4, Duration::from_millis(20), Duration::from_millis(2));
        // 20 requests of 1-3 rows and one of 9 rows.
        warm(&b, &calls);
        let answers = concurrently(&b, 21, |i| if i == 20 { 9 } else { 1 + i % 3 });
        for (rows, base, answer) in answers {
            assert_eq!(answer.unwrap(), expected(rows, base));
        }
        let calls = calls.lock().unwrap();
        assert_eq!(calls.iter().filter(|r| **r > 4).collect::<Vec<_>>(), [&9]);
        assert_eq!(
            calls.iter().sum::<usize>(),
            9 + (0..20).map(|i| 1 + i % 3).sum::<usize>()
        );
    }

    #[test]
    fn requests_of_other_shapes_run_apart() {
        let (b, calls) = batcher(1, 64, Duration::from_millis(200), Duration::ZERO);
        warm(&b, &calls);
        let odd = {
            let b = b.clone();
            std::thread::spawn(move || {
                // Rows of 3 elements: a key of its own.
                b.infer(
                    vec![Array {
                        shape: vec![2, 3],
                        data: Data::Int32(vec![1, 2, 3, 4, 5, 6]),
                    }],
                    2,
                )
            })
        };
        for (rows, base, answer) in concurrently(&b, 4, |_| 1) {
            assert_eq!(answer.unwrap(), expected(rows, base));
        }
        assert_eq!(
            odd.join().unwrap().unwrap(),
            vec![Array {
                shape: vec![2, 1],
                data: Data::Fp32(vec![6.0, 15.0]),
            }]
        );
        let calls = calls.lock().unwrap();
        // The odd request alone, the others together.
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls.contains(&2) && calls.contains(&4), "{calls:?}");
    }

    #[test]
    fn a_failed_call_fails_each_of_its_requests_and_the_next_calls_succeed() {
        let (b, calls) = batcher(1, 64, Duration::from_millis(500), Duration::ZERO);
        warm(&b, &calls);
        let failed = AtomicUsize::new(0);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let base = if i == 2 { -1 } else { 10 * i };
                    b.infer(request(1, base), 1)
                })
            })
            .collect();
        for t in threads {
            if let Err(e) = t.join().unwrap() {
                assert!(
                    e.contains("the model failed (in a call merging 4 requests, 4 rows)"),
                    "{e}"
                );
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The request holding -1 and each merged with it.
        assert_eq!(failed.load(Ordering::Relaxed), 4);
        assert_eq!(*calls.lock().unwrap(), [4]);
        assert_eq!(b.infer(request(2, 5), 2).unwrap(), expected(2, 5));
    }

    #[test]
    fn outputs_that_are_not_per_row_fail_each_merged_request() {
        struct Scalar;
        impl Run for Scalar {
            fn run(&mut self, _: Vec<Array>) -> Result<Vec<Array>, String> {
                std::thread::sleep(Duration::from_millis(5));
                Ok(vec![Array {
                    shape: vec![1],
                    data: Data::Fp32(vec![0.0]),
                }])
            }
        }
        let b = Arc::new(
            Batcher::start(
                vec![Scalar],
                Batching {
                    max_rows: 8,
                    delay: Duration::from_millis(300),
                },
                true,
            )
            .unwrap(),
        );
        // Alone, its output goes back as it is; merged, it cannot be split.
        assert!(b.infer(request(1, 0), 1).is_ok());
        let answers = concurrently(&b, 3, |_| 1);
        let errors: Vec<String> = answers
            .into_iter()
            .filter_map(|(_, _, a)| a.err())
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors.iter().all(|e| e.contains("cannot be split")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_model_without_a_batch_dimension_runs_each_request_alone() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::new(
            Batcher::start(
                vec![Sum {
                    calls: calls.clone(),
                    hold: Duration::from_millis(5),
                }],
                Batching {
                    max_rows: 64,
                    delay: Duration::from_millis(20),
                },
                false,
            )
            .unwrap(),
        );
        warm(&b, &calls);
        for (rows, base, answer) in concurrently(&b, 5, |_| 1) {
            assert_eq!(answer.unwrap(), expected(rows, base));
        }
        assert_eq!(*calls.lock().unwrap(), vec![1; 5]);
    }
}
