//! Dynamic batching of KServe inferences.
//!
//! A model has a few ONNX Runtime sessions ("runners"). Validated requests
//! wait in one queue, and the threads that brought them run them: there are
//! no worker threads. A requester that finds a runner free takes it and
//! leads a call: the oldest queued request and, when the model's first
//! dimension is its batch dimension, every later request whose inputs have
//! the same shape past the first dimension, up to [`Batching::max_rows`]
//! rows in all. It runs them as one call over the concatenated rows, hands
//! each request its own rows of every output, in order, and gives the
//! runner back. The other requesters of the call only wake to take their
//! answer. A lone client's request so runs on its own thread, with no hop to
//! another thread and back (on a machine with idle CPUs each hop costs a
//! wake-up of tens to hundreds of microseconds, which was about a third of
//! the whole confidential round trip of a small model).
//!
//! A requester that finds the oldest request queued for less than
//! [`Batching::delay`] waits for more (until the delay is over or the rows
//! reach the bound), but only when that request came less than the delay
//! after the one before it while others were queued or running: requests
//! are arriving together, and more are likely. A lone client's request runs
//! at once and pays no delay, even when it sends them back to back (each
//! came after the last was answered). With no
//! delay a call runs at once what is queued, which still merges requests
//! that arrived while the runners were busy. A request of more rows than
//! the bound runs alone, never split. Waiting is on condition variables: no
//! polling. When a leader gives its runner back while requests are queued
//! and its own request is answered, it wakes the owner of the oldest queued
//! request to lead the next call.
//!
//! Requests are validated before they are queued, so one request's bad input
//! never reaches its neighbours; an error of a merged call is reported to
//! every request in it. A call that panics fails each of its requests and
//! its runner is dropped; the others carry on, and once no runner is left
//! every request is refused.

use std::collections::VecDeque;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
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
/// model's order). The batcher lends it to one call at a time.
pub trait Run: Send + 'static {
    /// Runs the model once.
    fn run(&mut self, inputs: Vec<Array>) -> Result<Vec<Array>, String>;
}

/// A request's outputs, or why it has none.
type Answer = Result<Vec<Array>, String>;

/// What a requester waits for.
enum Turn {
    /// Its request is queued or being run.
    Waiting,
    /// A runner was given back while requests are queued: try to lead.
    Lead,
    /// Its request's answer.
    Done(Answer),
}

/// Where a requester waits, and is woken, alone.
struct Ticket {
    turn: Mutex<Turn>,
    woken: Condvar,
}

impl Ticket {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            turn: Mutex::new(Turn::Waiting),
            woken: Condvar::new(),
        })
    }

    fn turn(&self) -> MutexGuard<'_, Turn> {
        // A panic never happens with this lock held; take the state anyway.
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the request (a later `Lead` does not overwrite it).
    fn answer(&self, answer: Answer) {
        *self.turn() = Turn::Done(answer);
        self.woken.notify_one();
    }

    /// Asks its requester to try to lead, unless it is answered.
    fn lead(&self) {
        let mut turn = self.turn();
        if matches!(*turn, Turn::Waiting) {
            *turn = Turn::Lead;
            self.woken.notify_one();
        }
    }

    /// Its answer, if it came.
    fn take_answer(&self) -> Option<Answer> {
        let mut turn = self.turn();
        match std::mem::replace(&mut *turn, Turn::Waiting) {
            Turn::Done(answer) => Some(answer),
            other => {
                *turn = other;
                None
            }
        }
    }

    /// Sleeps until it is answered (`Some`) or asked to lead (`None`).
    fn wait(&self) -> Option<Answer> {
        let mut turn = self.turn();
        loop {
            match std::mem::replace(&mut *turn, Turn::Waiting) {
                Turn::Done(answer) => return Some(answer),
                Turn::Lead => return None,
                Turn::Waiting => {
                    turn = self.woken.wait(turn).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}

/// A validated request in the queue.
struct Job {
    inputs: Vec<Array>,
    rows: usize,
    /// The input shapes past the batch dimension: requests with equal keys
    /// can be concatenated. `None`: this request always runs alone.
    key: Option<Vec<Vec<usize>>>,
    arrived: Instant,
    /// Whether the request before it arrived less than the delay earlier
    /// and requests were queued or running when it came.
    crowded: bool,
    waiting: Option<Waiting>,
    ticket: Arc<Ticket>,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// The runners no call holds.
    idle: Vec<Box<dyn Run>>,
    /// Runners in all, idle or lent (a runner whose call panicked is gone).
    runners: usize,
    last_arrival: Option<Instant>,
}

/// The queue and the runners of one model.
pub struct Batcher {
    queue: Mutex<Queue>,
    /// Signalled when a request is queued: a leader waiting out the delay
    /// re-plans.
    arrived: Condvar,
    batching: Batching,
    /// Whether the model's inputs and outputs all have their batch as their
    /// first (dynamic) dimension, so that requests can be concatenated.
    mergeable: bool,
    metrics: OnceLock<ModelMetrics>,
}

impl Batcher {
    /// A batcher lending `runners` to calls. `mergeable`: whether the
    /// model's first dimension is the batch in every input and output.
    pub fn new<R: Run>(runners: Vec<R>, batching: Batching, mergeable: bool) -> Self {
        let idle: Vec<Box<dyn Run>> = runners
            .into_iter()
            .map(|r| Box::new(r) as Box<dyn Run>)
            .collect();
        Self {
            queue: Mutex::new(Queue {
                runners: idle.len(),
                idle,
                jobs: VecDeque::new(),
                last_arrival: None,
            }),
            arrived: Condvar::new(),
            batching: Batching {
                max_rows: batching.max_rows.max(1),
                ..batching
            },
            mergeable,
            metrics: OnceLock::new(),
        }
    }

    /// Reports each call (rows, requests merged, time) and each request's
    /// wait to `metrics`.
    pub fn observed_by(&self, metrics: ModelMetrics) {
        let _ = self.metrics.set(metrics);
    }

    fn queue(&self) -> Result<MutexGuard<'_, Queue>, String> {
        self.queue
            .lock()
            .map_err(|_| "the inference queue is poisoned".to_string())
    }

    /// Queues a validated request (its inputs in the model's order, all of
    /// `rows` rows) and returns its outputs, running calls on this thread
    /// whenever a runner is free.
    pub fn infer(&self, inputs: Vec<Array>, rows: usize) -> Result<Vec<Array>, String> {
        let key = self.mergeable.then(|| {
            inputs
                .iter()
                .map(|a| a.shape.get(1..).unwrap_or_default().to_vec())
                .collect()
        });
        let ticket = Ticket::new();
        {
            let mut queue = self.queue()?;
            if queue.runners == 0 {
                return Err("the model's inference workers have stopped".into());
            }
            let arrived = Instant::now();
            // A client that sends its next request once it has the answer
            // to the last never finds others in flight: it never waits.
            let in_flight = !queue.jobs.is_empty() || queue.idle.len() < queue.runners;
            let crowded = in_flight
                && queue
                    .last_arrival
                    .is_some_and(|last| arrived.duration_since(last) < self.batching.delay);
            queue.last_arrival = Some(arrived);
            queue.jobs.push_back(Job {
                inputs,
                rows: rows.max(1),
                key,
                arrived,
                crowded,
                waiting: self.metrics.get().map(ModelMetrics::waiting),
                ticket: ticket.clone(),
            });
        }
        self.arrived.notify_all();
        loop {
            if let Some(answer) = self.lead_while_free(&ticket)? {
                return answer;
            }
            if let Some(answer) = ticket.wait() {
                return answer;
            }
        }
    }

    /// Leads calls while this requester's request is queued and a runner is
    /// free; its answer once it came (`Some`), or `None` when it must wait
    /// (every runner is busy, or another requester's call holds its
    /// request).
    fn lead_while_free(&self, ticket: &Ticket) -> Result<Option<Answer>, String> {
        let mut queue = self.queue()?;
        loop {
            if let Some(answer) = ticket.take_answer() {
                hand_on(&queue);
                return Ok(Some(answer));
            }
            let queued = queue.jobs.iter().any(|j| std::ptr::eq(&*j.ticket, ticket));
            if !queued {
                // Another call holds it: a free runner goes to a waiter.
                hand_on(&queue);
                return Ok(None);
            }
            let (Some(oldest), false) = (queue.jobs.front(), queue.idle.is_empty()) else {
                return Ok(None);
            };
            let (picked, rows) = plan(&queue.jobs, self.batching.max_rows);
            let wait =
                (oldest.arrived + self.batching.delay).saturating_duration_since(Instant::now());
            let worth_waiting = oldest.crowded && oldest.key.is_some();
            if worth_waiting && !wait.is_zero() && rows < self.batching.max_rows {
                queue = self
                    .arrived
                    .wait_timeout(queue, wait)
                    .map_err(|_| "the inference queue is poisoned".to_string())?
                    .0;
                continue;
            }
            let Some(mut runner) = queue.idle.pop() else {
                return Ok(None);
            };
            // Highest position first, so the lower ones stay put.
            let mut batch: Vec<Job> = picked
                .iter()
                .rev()
                .filter_map(|i| queue.jobs.remove(*i))
                .collect();
            batch.reverse();
            // Another runner may be free for the requests left.
            hand_on(&queue);
            drop(queue);
            let survived = self.run(&mut runner, batch);
            queue = self.queue()?;
            if survived {
                queue.idle.push(runner);
            } else {
                queue.runners -= 1;
                if queue.runners == 0 {
                    for job in queue.jobs.drain(..) {
                        job.ticket
                            .answer(Err("the model's inference workers have stopped".into()));
                    }
                }
            }
        }
    }

    /// Runs a batch and answers each of its requests; whether the runner
    /// survived (a panicking call fails its requests and loses its runner).
    fn run(&self, runner: &mut Box<dyn Run>, mut batch: Vec<Job>) -> bool {
        let rows: usize = batch.iter().map(|j| j.rows).sum();
        for job in &mut batch {
            if let Some(waiting) = job.waiting.take() {
                waiting.done();
            }
        }
        let started = Instant::now();
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| match batch.as_mut_slice() {
            [job] => runner.run(std::mem::take(&mut job.inputs)),
            jobs => merge(jobs).and_then(|inputs| runner.run(inputs)),
        }));
        let survived = called.is_ok();
        let outcome = called.unwrap_or_else(|_| Err("the model call panicked".into()));
        if let Some(m) = self.metrics.get() {
            m.run(rows, batch.len(), started.elapsed());
        }
        let answers = match (batch.len(), outcome) {
            (1, outcome) => vec![outcome],
            (_, Ok(outputs)) => split(&outputs, &batch, rows),
            (n, Err(e)) => {
                let e = format!("{e} (in a call merging {n} requests, {rows} rows)");
                vec![Err(e); n]
            }
        };
        for (job, answer) in batch.into_iter().zip(answers) {
            job.ticket.answer(answer);
        }
        survived
    }
}

/// Asks the owner of the oldest queued request to lead a call when a
/// runner is free (called by a requester that will not lead now).
fn hand_on(queue: &Queue) {
    if let (Some(next), false) = (queue.jobs.front(), queue.idle.is_empty()) {
        next.ticket.lead();
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
    use std::sync::mpsc;

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
        (Arc::new(Batcher::new(runners, batching, true)), calls)
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

    /// Keeps the one runner busy with a 1-row request for the model's hold,
    /// so that the requests sent meanwhile queue crowded behind it (a
    /// request that finds nothing queued or running runs at once).
    fn busy(b: &Arc<Batcher>) -> std::thread::JoinHandle<()> {
        let b = b.clone();
        let runner_taken = {
            let b = b.clone();
            move || b.queue.lock().unwrap().idle.is_empty()
        };
        let blocker = std::thread::spawn(move || assert!(b.infer(request(1, 7), 1).is_ok()));
        while !runner_taken() {
            std::thread::sleep(Duration::from_micros(200));
        }
        blocker
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
        let (b, calls) = batcher(1, 64, Duration::from_millis(50), Duration::from_millis(2));
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
    fn back_to_back_requests_of_one_client_never_wait() {
        let (b, calls) = batcher(1, 64, Duration::from_secs(5), Duration::ZERO);
        let started = Instant::now();
        for base in 0..5 {
            assert_eq!(b.infer(request(1, base), 1).unwrap(), expected(1, base));
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(*calls.lock().unwrap(), [1; 5]);
    }

    #[test]
    fn no_delay_still_merges_what_queued_during_a_call() {
        let (b, calls) = batcher(1, 64, Duration::ZERO, Duration::from_millis(30));
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
        let (b, calls) = batcher(
            1,
            64,
            Duration::from_millis(200),
            Duration::from_millis(100),
        );
        let blocker = busy(&b);
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
        blocker.join().unwrap();
        let calls = calls.lock().unwrap();
        // The blocker, then the odd request alone and the others together.
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(calls.contains(&2) && calls.contains(&4), "{calls:?}");
    }

    #[test]
    fn a_failed_call_fails_each_of_its_requests_and_the_next_calls_succeed() {
        let (b, calls) = batcher(
            1,
            64,
            Duration::from_millis(100),
            Duration::from_millis(100),
        );
        let blocker = busy(&b);
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
        blocker.join().unwrap();
        // The request holding -1 and each merged with it.
        assert_eq!(failed.load(Ordering::Relaxed), 4);
        assert_eq!(*calls.lock().unwrap(), [1, 4]);
        assert_eq!(b.infer(request(2, 5), 2).unwrap(), expected(2, 5));
    }

    #[test]
    fn outputs_that_are_not_per_row_fail_each_merged_request() {
        struct Scalar;
        impl Run for Scalar {
            fn run(&mut self, _: Vec<Array>) -> Result<Vec<Array>, String> {
                std::thread::sleep(Duration::from_millis(100));
                Ok(vec![Array {
                    shape: vec![1],
                    data: Data::Fp32(vec![0.0]),
                }])
            }
        }
        let b = Arc::new(Batcher::new(
            vec![Scalar],
            Batching {
                max_rows: 8,
                delay: Duration::from_millis(300),
            },
            true,
        ));
        // Alone, its output goes back as it is; merged, it cannot be split.
        assert!(b.infer(request(1, 0), 1).is_ok());
        let blocker = busy(&b);
        let answers = concurrently(&b, 3, |_| 1);
        blocker.join().unwrap();
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
        let b = Arc::new(Batcher::new(
            vec![Sum {
                calls: calls.clone(),
                hold: Duration::from_millis(5),
            }],
            Batching {
                max_rows: 64,
                delay: Duration::from_millis(20),
            },
            false,
        ));
        for (rows, base, answer) in concurrently(&b, 5, |_| 1) {
            assert_eq!(answer.unwrap(), expected(rows, base));
        }
        assert_eq!(*calls.lock().unwrap(), vec![1; 5]);
    }

    /// Records the thread of each call; panics on a call holding the value -2.
    struct Threads {
        seen: Arc<Mutex<Vec<std::thread::ThreadId>>>,
        hold: Duration,
    }

    impl Run for Threads {
        fn run(&mut self, inputs: Vec<Array>) -> Result<Vec<Array>, String> {
            std::thread::sleep(self.hold);
            self.seen.lock().unwrap().push(std::thread::current().id());
            let input = inputs.into_iter().next().ok_or("no input")?;
            let Data::Int32(v) = input.data else {
                return Err("not int32".into());
            };
            assert!(!v.contains(&-2), "the model panicked");
            let sums = v.chunks(2).map(|c| c.iter().sum::<i32>() as f32).collect();
            Ok(vec![Array {
                shape: vec![input.shape[0], 1],
                data: Data::Fp32(sums),
            }])
        }
    }

    fn threads_batcher(
        sessions: usize,
        delay: Duration,
        hold: Duration,
    ) -> (Arc<Batcher>, Arc<Mutex<Vec<std::thread::ThreadId>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runners = (0..sessions)
            .map(|_| Threads {
                seen: seen.clone(),
                hold,
            })
            .collect();
        let batching = Batching { max_rows: 8, delay };
        (Arc::new(Batcher::new(runners, batching, true)), seen)
    }

    #[test]
    fn a_lone_request_runs_on_its_own_thread() {
        let (b, seen) = threads_batcher(2, Duration::from_millis(5), Duration::ZERO);
        for base in 0..3 {
            assert_eq!(b.infer(request(2, base), 2).unwrap(), expected(2, base));
        }
        let here = std::thread::current().id();
        assert_eq!(*seen.lock().unwrap(), vec![here; 3]);
    }

    #[test]
    fn a_panicking_call_fails_its_requests_and_the_last_lost_runner_stops_the_model() {
        let (b, _) = threads_batcher(2, Duration::ZERO, Duration::ZERO);
        let e = b.infer(request(1, -2), 1).unwrap_err();
        assert!(e.contains("the model call panicked"), "{e}");
        // One runner left: the model still answers.
        assert_eq!(b.infer(request(1, 4), 1).unwrap(), expected(1, 4));
        assert!(b.infer(request(1, -2), 1).is_err());
        let e = b.infer(request(1, 4), 1).unwrap_err();
        assert!(e.contains("inference workers have stopped"), "{e}");
    }

    #[test]
    fn requests_queued_behind_a_panicking_call_are_answered() {
        // One runner, a slow call that panics, and requests queued behind it.
        let (b, _) = threads_batcher(1, Duration::ZERO, Duration::from_millis(30));
        let first = {
            let b = b.clone();
            std::thread::spawn(move || b.infer(request(1, -2), 1))
        };
        std::thread::sleep(Duration::from_millis(10));
        let answers = concurrently(&b, 4, |_| 1);
        assert!(first.join().unwrap().is_err());
        for (_, _, answer) in answers {
            let e = answer.unwrap_err();
            assert!(e.contains("inference workers have stopped"), "{e}");
        }
    }

    #[test]
    fn many_requesters_on_few_runners_all_get_their_rows() {
        // Handing runners from requester to requester under load: every
        // answer is its own, and nothing waits forever.
        let (b, calls) = batcher(2, 5, Duration::from_micros(200), Duration::from_micros(300));
        let (done, finished) = mpsc::channel();
        for t in 0..16 {
            let (b, done) = (b.clone(), done.clone());
            std::thread::spawn(move || {
                for k in 0..40 {
                    let (rows, base) = (1 + (t + k) % 3, 100 * t as i32 + k as i32);
                    assert_eq!(
                        b.infer(request(rows, base), rows).unwrap(),
                        expected(rows, base)
                    );
                }
                done.send(()).unwrap();
            });
        }
        for _ in 0..16 {
            finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a requester is still waiting");
        }
        let calls = calls.lock().unwrap();
        assert!(calls.iter().all(|rows| *rows <= 5), "{calls:?}");
        let all: usize = (0..16)
            .flat_map(|t| (0..40).map(move |k| 1 + (t + k) % 3))
            .sum();
        assert_eq!(calls.iter().sum::<usize>(), all);
        assert!(calls.len() < 16 * 40, "nothing merged");
    }

    #[test]
    fn requests_that_cannot_merge_run_at_once_on_the_free_runners() {
        // Records when each call ran, and the width of its rows.
        struct Timed(Arc<Mutex<Vec<(usize, Instant, Instant)>>>);
        impl Run for Timed {
            fn run(&mut self, inputs: Vec<Array>) -> Result<Vec<Array>, String> {
                let started = Instant::now();
                std::thread::sleep(Duration::from_millis(100));
                let shape = &inputs[0].shape;
                self.0
                    .lock()
                    .unwrap()
                    .push((shape[1], started, Instant::now()));
                Ok(vec![Array {
                    shape: vec![shape[0], 1],
                    data: Data::Fp32(vec![0.0; shape[0]]),
                }])
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let batching = Batching {
            max_rows: 8,
            delay: Duration::ZERO,
        };
        let b = Arc::new(Batcher::new(
            vec![Timed(log.clone()), Timed(log.clone())],
            batching,
            true,
        ));
        let send = |width: usize| {
            let b = b.clone();
            let array = Array {
                shape: vec![1, width],
                data: Data::Int32(vec![1; width]),
            };
            std::thread::spawn(move || b.infer(vec![array], 1).unwrap())
        };
        // Both runners busy (rows of 4 and of 5: two requests of one shape
        // could merge into one call and leave a runner idle), then two
        // requests of other widths queue: when the runners come back, each
        // of the two gets one (whoever gives a runner back, or leads with
        // one while another is free, wakes the oldest waiter).
        let blockers = [send(4), send(5)];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !b.queue.lock().unwrap().idle.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the two blockers never held both runners"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let (two, three) = (send(2), send(3));
        for t in blockers.into_iter().chain([two, three]) {
            t.join().unwrap();
        }
        let log = log.lock().unwrap();
        let call = |width| *log.iter().find(|c| c.0 == width).unwrap();
        let ((_, start2, end2), (_, start3, end3)) = (call(2), call(3));
        assert!(
            start2 < end3 && start3 < end2,
            "the two ran one after the other: {log:?}"
        );
    }
}
