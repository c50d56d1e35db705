//! Group commit: the bounded submission queue, the writer thread and [`Completion`].
//!
//! Submitters (shard threads) push a job into a bounded queue without ever blocking. The
//! writer thread takes everything queued (up to `max_batch` jobs), runs each job in a nested
//! transaction of ONE write transaction, commits it (LMDB fsyncs on commit), and only then
//! completes every job of the batch. Queue capacity freed by taking a batch is handed back
//! to parked submitters before the fsync, so the next batch fills while this one syncs.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_channel::oneshot;
use lmdb::Transaction;

use crate::storage::Shared;
use crate::txn::WriteTxn;
use crate::{LmdbError, StorageError};

/// One queued write, type-erased so jobs of any result type share the queue.
pub(crate) trait Job: Send {
    /// Runs the write inside `txn`. On `Err` the caller rolls `txn` back.
    fn run(&mut self, txn: &mut WriteTxn<'_>) -> Result<(), RunFailure>;
    /// Replaces a successful result by `err` (its nested transaction failed to commit).
    fn fail(&mut self, err: StorageError);
    /// Delivers the result: the job's own, or `commit`'s error if the batch did not commit.
    fn finish(self: Box<Self>, commit: Result<(), LmdbError>);
}

/// Why a job's write was rolled back.
pub(crate) struct RunFailure {
    /// The error may come from the size of the batch (map or transaction full).
    pub(crate) batch_capacity: bool,
}

type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

struct TypedJob<F, T> {
    f: Option<F>,
    result: Option<Result<T, StorageError>>,
    reply: Reply<T>,
}

impl<F, T> Job for TypedJob<F, T>
where
    F: FnOnce(&mut WriteTxn<'_>) -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    fn run(&mut self, txn: &mut WriteTxn<'_>) -> Result<(), RunFailure> {
        let Some(f) = self.f.take() else {
            return Err(RunFailure {
                batch_capacity: false,
            });
        };
        // A panicking closure must fail alone instead of taking the writer thread down.
        let result = catch_unwind(AssertUnwindSafe(|| f(txn)))
            .unwrap_or_else(|payload| Err(StorageError::Panicked(panic_message(&*payload))));
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(RunFailure {
                batch_capacity: e.is_batch_capacity(),
            }),
        };
        self.result = Some(result);
        outcome
    }

    fn fail(&mut self, err: StorageError) {
        self.result = Some(Err(err));
    }

    fn finish(self: Box<Self>, commit: Result<(), LmdbError>) {
        let out = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(StorageError::Lmdb(e)),
            (None, Ok(())) => Err(StorageError::ShuttingDown),
        };
        // The submitter may have dropped its Completion; the write stands regardless.
        let _ = self.reply.send(out);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Boxes a write closure as a job and returns the receiving end of its result.
pub(crate) fn job<T, F>(f: F) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StorageError>>)
where
    F: FnOnce(&mut WriteTxn<'_>) -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    (
        Box::new(TypedJob {
            f: Some(f),
            result: None,
            reply,
        }),
        rx,
    )
}

/// Counters of the writer thread, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Write transactions the writer committed (or tried to).
    pub commits: u64,
    /// Jobs the writer ran (successful or not).
    pub jobs: u64,
}

/// The submission side of the queue, shared by every handle and parked [`Completion`].
pub(crate) struct Queue {
    /// `None` once shut down. Dropping the only sender lets the writer drain what is queued
    /// and exit; the lock makes "check open, then enqueue" atomic against shutdown.
    tx: RwLock<Option<Sender<Box<dyn Job>>>>,
    /// Submitters that found the queue full, woken whenever the writer takes a batch.
    parked: Mutex<Vec<Waker>>,
    commits: AtomicU64,
    jobs: AtomicU64,
    /// How long each commit took (the durable write, fsync included).
    pub(crate) commit_latency: crate::histogram::LatencyHistogram,
}

pub(crate) enum Rejected {
    Full(Box<dyn Job>),
    Closed,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> (Arc<Queue>, Receiver<Box<dyn Job>>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let queue = Queue {
            tx: RwLock::new(Some(tx)),
            parked: Mutex::new(Vec::new()),
            commits: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            commit_latency: crate::histogram::LatencyHistogram::default(),
        };
        (Arc::new(queue), rx)
    }

    /// A queue that accepts nothing (read-only handles).
    pub(crate) fn closed() -> Arc<Queue> {
        let (queue, _rx) = Queue::new(1);
        queue.close();
        queue
    }

    pub(crate) fn try_enqueue(&self, job: Box<dyn Job>) -> Result<(), Rejected> {
        let tx = self.tx.read().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else {
            return Err(Rejected::Closed);
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(Rejected::Full(job)),
            Err(TrySendError::Disconnected(_)) => Err(Rejected::Closed),
        }
    }

    /// `try_enqueue`, parking `waker` if the queue is full. The second attempt after parking
    /// closes the race with a writer that freed space just before we parked.
    fn offer(&self, job: Box<dyn Job>, waker: &Waker) -> Result<(), Rejected> {
        match self.try_enqueue(job) {
            Err(Rejected::Full(job)) => {
                self.parked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(waker.clone());
                self.try_enqueue(job)
            }
            other => other,
        }
    }

    fn wake_parked(&self) {
        let parked =
            std::mem::take(&mut *self.parked.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in parked {
            waker.wake();
        }
    }

    /// Stops accepting jobs; the writer drains what is already queued, then exits.
    pub(crate) fn close(&self) {
        self.tx
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.wake_parked();
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            jobs: self.jobs.load(Ordering::Relaxed),
        }
    }
}

/// The result of a group-committed write: resolves once the batch holding it has been
/// committed durably (Ok) or the write failed.
///
/// It is an ordinary `Future` that needs no particular executor. If the queue was full when
/// the write was submitted, the write waits inside this future and is enqueued when the
/// future is polled after the writer frees space: the submitting thread never blocks, and
/// back-pressure reaches the submitter as a pending future. Consequently:
/// * dropping a Completion whose write was already enqueued does not cancel the write;
/// * dropping one whose write is still waiting for queue space abandons that write.
#[must_use = "a write is only known durable when its Completion resolves Ok"]
pub struct Completion<T> {
    state: State<T>,
}

type ResultRx<T> = oneshot::Receiver<Result<T, StorageError>>;

enum State<T> {
    Queued(ResultRx<T>),
    Parked {
        job: Box<dyn Job>,
        rx: ResultRx<T>,
        queue: Arc<Queue>,
    },
    Ready(Option<Result<T, StorageError>>),
}

// The result is only moved out, never pinned.
impl<T> Unpin for Completion<T> {}

impl<T> Completion<T> {
    pub(crate) fn submitted(
        queue: &Arc<Queue>,
        job: Box<dyn Job>,
        rx: ResultRx<T>,
    ) -> Completion<T> {
        let state = match queue.try_enqueue(job) {
            Ok(()) => State::Queued(rx),
            Err(Rejected::Full(job)) => State::Parked {
                job,
                rx,
                queue: Arc::clone(queue),
            },
            Err(Rejected::Closed) => State::Ready(Some(Err(StorageError::ShuttingDown))),
        };
        Completion { state }
    }

    pub(crate) fn ready(result: Result<T, StorageError>) -> Completion<T> {
        Completion {
            state: State::Ready(Some(result)),
        }
    }

    /// Blocks the calling thread until the write completes. For tools, tests and other
    /// non-async callers only: never call it on a shard thread.
    pub fn wait(mut self) -> Result<T, StorageError> {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(out) = Pin::new(&mut self).poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, StorageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            this.state = match std::mem::replace(&mut this.state, State::Ready(None)) {
                State::Queued(mut rx) => match Pin::new(&mut rx).poll(cx) {
                    // A dropped reply means the writer is gone without running the job.
                    Poll::Ready(r) => {
                        return Poll::Ready(r.unwrap_or(Err(StorageError::ShuttingDown)))
                    }
                    Poll::Pending => {
                        this.state = State::Queued(rx);
                        return Poll::Pending;
                    }
                },
                State::Ready(out) => {
                    return Poll::Ready(out.expect("Completion polled after it resolved"));
                }
                State::Parked { job, rx, queue } => match queue.offer(job, cx.waker()) {
                    Ok(()) => State::Queued(rx),
                    Err(Rejected::Full(job)) => {
                        this.state = State::Parked { job, rx, queue };
                        return Poll::Pending;
                    }
                    Err(Rejected::Closed) => State::Ready(Some(Err(StorageError::ShuttingDown))),
                },
            };
        }
    }
}

/// How often the writer clears reader slots left behind by dead processes (e.g. a CLI
/// killed mid-read), which would otherwise pin old pages and grow the file.
const READER_CHECK_EVERY: Duration = Duration::from_secs(30);

/// The writer thread: batch, apply, commit, complete; until the queue is closed and empty.
pub(crate) fn run(
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    rx: Receiver<Box<dyn Job>>,
    max_batch: usize,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut last_reader_check = Instant::now();
    // `recv` keeps returning queued jobs after shutdown dropped the sender, and fails only
    // once the queue is empty: that is the drain.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        queue.wake_parked();
        queue.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        apply_batch(&shared, &queue, &mut batch);
        if last_reader_check.elapsed() >= READER_CHECK_EVERY {
            shared.clear_stale_readers();
            last_reader_check = Instant::now();
        }
    }
}

/// Applies and completes every job of `batch`, leaving it empty. Normally in one write
/// transaction; the batch is split after a job that hit a capacity limit (map or
/// transaction full), so the jobs after it get a fresh transaction.
fn apply_batch(shared: &Shared, queue: &Queue, batch: &mut Vec<Box<dyn Job>>) {
    let mut jobs = batch.drain(..);
    let mut done: Vec<Box<dyn Job>> = Vec::new();
    loop {
        let mut parent = match shared.env().begin_rw_txn() {
            Ok(txn) => txn,
            Err(e) => {
                // Nothing can be written right now; every remaining job gets the error.
                for job in jobs {
                    job.finish(Err(LmdbError(e)));
                }
                return;
            }
        };
        let mut split = false;
        for mut job in jobs.by_ref() {
            // lmdb-rkv ignores mdb_txn_begin's code for nested transactions; a null handle
            // means the parent is unusable (MDB_BAD_TXN) and its commit below fails too.
            let child = match parent.begin_nested_txn() {
                Ok(child) if !child.txn().is_null() => child,
                Ok(_) => {
                    job.fail(StorageError::Lmdb(LmdbError(lmdb::Error::BadTxn)));
                    done.push(job);
                    continue;
                }
                Err(e) => {
                    job.fail(e.into());
                    done.push(job);
                    continue;
                }
            };
            let mut txn = WriteTxn::new(child, shared.dbs());
            match job.run(&mut txn) {
                Ok(()) => {
                    if let Err(e) = txn.into_inner().commit() {
                        job.fail(e.into());
                    }
                }
                Err(RunFailure { batch_capacity }) => {
                    drop(txn);
                    if batch_capacity && !done.is_empty() {
                        split = true;
                    }
                }
            }
            done.push(job);
            if split {
                break;
            }
        }
        let started = std::time::Instant::now();
        let committed = parent.commit().map_err(LmdbError);
        queue.commit_latency.record(started.elapsed());
        // Counted before anyone learns of the commit, so stats never lag a Completion.
        queue.commits.fetch_add(1, Ordering::Relaxed);
        for job in done.drain(..) {
            job.finish(committed);
        }
        if !split {
            return;
        }
    }
}
