//! The audit journal (issue #19): the records of reads, searches, refusals and forwarding
//! attempts, appended to a local file before their response leaves, and copied into `audit_log`
//! in the background.
//!
//! Waiting for a database commit before every read's response bounded audited reads to what one
//! writer's round trips allow, whatever the hardware. An append is one `write` to the operating
//! system: once it returns, a crash of the process cannot lose the record, and the syncer
//! `fdatasync`s the file within `audit.max_unsynced_ms` (the window at risk on power loss).
//!
//! - **Segments.** The journal is a directory of segment files, `<time>-<random>.journal`, one
//!   JSON line per record ([`Columns`]). The open segment is closed when the next record would
//!   take it past [`SEGMENT_BYTES`], or at the first failed append (so a torn line can never be
//!   followed by a whole one).
//! - **Appending without a system call.** The open segment's blocks are reserved
//!   (`posix_fallocate`) and the file is mapped shared: an append copies the line into the page
//!   cache under the journal's lock. What is in the page cache belongs to the kernel, so the
//!   record survives a crash of the process as it did after a `write`; the syncer writes the
//!   mapping back (`msync`) as it synced the file. A `write` per audited request held the lock
//!   through a system call, and two workers queued on it. Where blocks cannot be reserved or the
//!   file cannot be mapped, the segment is appended to with positioned writes, as before. A
//!   closed segment is cut to its records; one left by a crash ends in reserved zeros, which
//!   the next start does not count as records.
//! - **Rows kept in memory.** A record appended by this process is also kept, as its row, until
//!   the ingester takes it: the ingester copies those rows without reading and parsing their
//!   lines back (that was a fifth of the copy's work). The file stays what is copied after a
//!   crash, after a failed copy, and for a previous run's segments; a kept row is used only for
//!   the very bytes at the ingester's position in its segment.
//! - **The ingester** copies whole lines, oldest segment first, into `audit_log`; each
//!   transaction also moves the segment's mark (`audit_journal.end_offset`), so after a crash it
//!   starts exactly where the last commit left it: no record lost, none copied twice. A
//!   segment copied in full is marked done in a synced commit, then its file is deleted, then
//!   its mark. If the database is unavailable the records wait in the journal.
//! - **Backpressure.** At most `audit.queue_capacity` records wait for the ingester; past that,
//!   recorders wait for room (counted and logged), nothing is dropped.
//! - **Reading the trail** settles first ([`Journal::settle`]): every record appended before is
//!   copied, so `/fhir/AuditEvent` answers what happened before it was asked.
//! - **At start** the segments a previous run left are copied before anything is served; a line
//!   cut short by a crash (its request never answered) is left out. A lock file keeps a second
//!   process from using the same journal.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::compact::Columns;
use super::writer::{log_lost_row, AuditStats};
use crate::engine::Engine;
use crate::store::StoreError;

/// A segment holds at most this many bytes (the size reserved for a mapped one); a record that
/// would go past it begins a new segment.
const SEGMENT_BYTES: u64 = 16 << 20;
/// Most bytes read from a segment for one transaction (a record is at most a few KiB, usually
/// a few hundred bytes: room for [`CATCH_UP`] batches of them).
const READ_BYTES: u64 = 4 << 20;
/// How many times `audit.batch_size` one transaction copies when the ingester is behind.
const CATCH_UP: usize = 4;
/// Attempts at copying a batch before its lines are tried one by one.
const ATTEMPTS: u32 = 4;
/// How long reading the trail waits for the journal to be copied before it answers anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const SUFFIX: &str = ".journal";
/// How long the ingester lets records gather once woken, unless someone waits for them: a
/// few large transactions cost the database far less than one per record.
const GATHER: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct Segment {
    name: String,
    /// Bytes of whole records in it.
    len: u64,
    /// Nothing more is appended to it.
    closed: bool,
    /// This process's number for it, what [`Pending`] rows name; 0 for a previous run's. A
    /// segment of this process has its records counted in `appended`.
    serial: u64,
}

/// A record appended by this process and not yet taken by the ingester: its row, and where its
/// line is.
#[derive(Debug)]
struct Pending {
    serial: u64,
    start: u64,
    len: u64,
    row: Columns,
}

/// The open segment's file, and its mapping when it has one.
#[derive(Debug, Clone)]
struct OpenFile {
    file: Arc<File>,
    /// `SEGMENT_BYTES` of the file, mapped shared; `None` appends with positioned writes.
    map: Option<Arc<memmap2::MmapRaw>>,
}

/// A closed segment's file, synced once more by the syncer (and cut to `len`, its records).
#[derive(Debug)]
struct Retired {
    open: OpenFile,
    len: u64,
}

#[derive(Debug, Default)]
struct Tail {
    /// The open segment's file, if any (the back of `segments`).
    file: Option<OpenFile>,
    /// Oldest first: the segments not yet copied in full.
    segments: VecDeque<Segment>,
    /// Shutting down: appends are refused (the recorder writes to the database directly).
    stopped: bool,
    /// Rows appended and not yet taken by the ingester, in the order of their lines.
    pending: VecDeque<Pending>,
    /// The last segment number given.
    serial: u64,
}

/// An append that did not happen: why, and the row it was given (boxed: refusals are rare, and
/// the row would make every append's result as large).
#[derive(Debug)]
pub(crate) struct Refused {
    pub error: AppendError,
    pub row: Box<Columns>,
}

/// Why an append did not happen.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The journal is shutting down.
    Stopped,
    Io(std::io::Error),
}

/// The journal's shared half: appended to by recorders, read by the ingester.
pub(crate) struct Journal {
    dir: PathBuf,
    tail: Mutex<Tail>,
    /// Records appended by this process, and of those copied into the database (or given up).
    appended: AtomicU64,
    ingested: watch::Sender<u64>,
    /// Bytes appended, and bytes known synced to disk.
    appended_bytes: AtomicU64,
    synced_bytes: AtomicU64,
    /// Closed segments still to be synced once.
    retired: Mutex<Vec<Retired>>,
    wake: Notify,
    /// Someone waits for the ingester (a reader of the trail, a recorder out of room): it
    /// copies at once instead of letting records gather.
    urgent: AtomicBool,
    /// The ingester waits for appends (the first append wakes it).
    idle: AtomicBool,
    capacity: u64,
    sync_failed: AtomicBool,
    /// A segment could not be mapped (said once).
    unmapped: AtomicBool,
    /// Held (locked) from `open` until [`Journal::release`].
    lock: Mutex<Option<File>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

/// The file of segment `name` in the journal directory `dir`.
fn segment_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{SUFFIX}"))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// The records at the start of `file`: the length of its whole lines, and the bytes after them
/// that a crash cut short (a record whose request was never answered).
///
/// A mapped segment left by a crash ends in reserved zero bytes, and a line being copied when
/// the process died may hold zeros (a record never holds one: JSON escapes control
/// characters). So the records end at the last line break before the first zero byte.
fn whole_lines(file: &File) -> std::io::Result<(u64, u64)> {
    let size = file.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    let mut whole = 0u64;
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, at)?;
        let data = match memchr::memchr(0, chunk) {
            Some(zero) => &chunk[..zero],
            None => &chunk[..],
        };
        if let Some(i) = memchr::memrchr(b'\n', data) {
            whole = at + i as u64 + 1;
        }
        if data.len() < chunk.len() {
            return Ok((whole, at + data.len() as u64 - whole));
        }
        at += n as u64;
    }
    Ok((whole, size - whole))
}

/// Reserve `SEGMENT_BYTES` for `file` and map them shared, or say why not.
fn map_segment(file: &File) -> std::io::Result<memmap2::MmapRaw> {
    use std::os::fd::AsRawFd as _;
    let len = libc::off_t::try_from(SEGMENT_BYTES).map_err(std::io::Error::other)?;
    // SAFETY: a plain system call on a file descriptor this function borrows.
    let err = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if err != 0 {
        return Err(std::io::Error::from_raw_os_error(err));
    }
    // The mapping covers exactly the reserved length.
    memmap2::MmapOptions::new()
        .len(SEGMENT_BYTES as usize)
        .map_raw(file)
}

impl Journal {
    /// Open the journal in `dir` (created if need be) and copy what a previous run left into
    /// the database. Fails if another process holds the journal or the database refuses.
    pub(crate) async fn open(
        dir: &Path,
        engine: Arc<Engine>,
        capacity: usize,
        batch: usize,
        stats: Arc<AuditStats>,
    ) -> Result<(Arc<Journal>, Ingester), String> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("cannot open", &lock_path, e))?;
        lock.try_lock().map_err(|_| {
            format!(
                "the audit journal {} is in use by another process (two gateways cannot share one journal; set audit.journal_dir)",
                dir.display()
            )
        })?;
        let marks: HashMap<String, crate::store::audit_log::JournalMark> = engine
            .store()
            .audit_journal_marks()
            .await
            .map_err(|e| format!("reading the audit journal's marks: {e}"))?
            .into_iter()
            .map(|m| (m.segment.clone(), m))
            .collect();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| io_error("cannot read", dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(SUFFIX).map(str::to_string))
            .collect();
        names.sort();
        let mut segments = VecDeque::new();
        let mut forget = Vec::new();
        for name in &names {
            let path = segment_path(dir, name);
            if marks.get(name).is_some_and(|m| m.done) {
                // Copied in full before the last run stopped; only the deletion was left.
                std::fs::remove_file(&path).map_err(|e| io_error("cannot delete", &path, e))?;
                forget.push(name.clone());
                continue;
            }
            let file = File::open(&path).map_err(|e| io_error("cannot open", &path, e))?;
            let (len, cut) = whole_lines(&file).map_err(|e| io_error("cannot read", &path, e))?;
            if cut > 0 {
                tracing::warn!(
                    segment = %name,
                    bytes = cut,
                    "an audit journal record was cut short by a crash: its request was never answered; left out"
                );
            }
            segments.push_back(Segment {
                name: name.clone(),
                len,
                closed: true,
                serial: 0,
            });
        }
        for (name, mark) in &marks {
            if !names.contains(name) {
                if !mark.done {
                    tracing::error!(
                        segment = %name,
                        copied_bytes = mark.end,
                        "an audit journal segment not copied in full is missing from {}: the records after its mark are lost",
                        dir.display()
                    );
                }
                forget.push(name.clone());
            }
        }
        let journal = Arc::new(Journal::new(dir, segments, capacity, Some(lock)));
        let mut ingester = Ingester {
            journal: journal.clone(),
            engine,
            stats,
            batch: batch.max(1),
            reader: None,
            buf: Vec::new(),
            marks: marks.into_iter().map(|(k, m)| (k, m.end)).collect(),
        };
        for name in forget {
            ingester
                .forget(&name)
                .await
                .map_err(|e| format!("forgetting audit journal segment {name}: {e}"))?;
        }
        // What the previous run left is copied before anything is served.
        loop {
            match ingester.step().await {
                Ok(Step::Idle) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("copying the audit journal into the database: {e}")),
            }
        }
        Ok((journal, ingester))
    }

    /// A journal in `dir` holding `segments` (a previous run's, oldest first), room for
    /// `capacity` records waiting, and the directory's `lock` while it is held.
    fn new(
        dir: &Path,
        segments: VecDeque<Segment>,
        capacity: usize,
        lock: Option<File>,
    ) -> Journal {
        let (ingested, _) = watch::channel(0);
        Journal {
            dir: dir.to_path_buf(),
            tail: Mutex::new(Tail {
                segments,
                ..Tail::default()
            }),
            appended: AtomicU64::new(0),
            ingested,
            appended_bytes: AtomicU64::new(0),
            synced_bytes: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
            wake: Notify::new(),
            urgent: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            capacity: capacity.max(1) as u64,
            sync_failed: AtomicBool::new(false),
            unmapped: AtomicBool::new(false),
            lock: Mutex::new(lock),
        }
    }

    /// Records appended and not yet copied.
    pub(crate) fn backlog(&self) -> u64 {
        self.appended
            .load(Ordering::SeqCst)
            .saturating_sub(*self.ingested.borrow())
    }

    /// Wait while the backlog is at capacity; whether it was (a backpressure wait).
    pub(crate) async fn room(&self) -> bool {
        if self.backlog() < self.capacity {
            return false;
        }
        let mut rx = self.ingested.subscribe();
        self.hurry();
        while self.backlog() >= self.capacity {
            if rx.changed().await.is_err() {
                break;
            }
        }
        true
    }

    /// Let records gather for [`GATHER`], unless someone waits for them or the ingester stops.
    async fn gather(&self, stop: &watch::Receiver<bool>) {
        if self.urgent.load(Ordering::SeqCst) || *stop.borrow() {
            return;
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(GATHER) => {}
            // Only `hurry` wakes a gathering ingester (appenders wake an idle one).
            _ = self.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }

    /// Wake the ingester to copy at once.
    fn hurry(&self) {
        self.urgent.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Append one record; once this returns `Ok` the record survives a crash of the process.
    pub(crate) fn append(&self, row: Columns) -> Result<(), Refused> {
        thread_local! {
            /// The line being appended, reused: a fresh vector grew twice for every record.
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let appended = LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            row.write_line(&mut line);
            line.push(b'\n');
            let n = line.len() as u64;
            if n > SEGMENT_BYTES {
                return Err(AppendError::Io(std::io::Error::other(format!(
                    "an audit record of {n} bytes is larger than a journal segment"
                ))));
            }
            let mut tail = self
                .tail
                .lock()
                .map_err(|_| AppendError::Io(std::io::Error::other("journal lock poisoned")))?;
            let (serial, start) = self.copy_line(&mut tail, &line)?;
            Ok((tail, serial, start, n))
        });
        let (mut tail, serial, start, len) = match appended {
            Ok(done) => done,
            Err(error) => {
                return Err(Refused {
                    error,
                    row: Box::new(row),
                })
            }
        };
        tail.pending.push_back(Pending {
            serial,
            start,
            len,
            row,
        });
        drop(tail);
        self.appended.fetch_add(1, Ordering::SeqCst);
        self.appended_bytes.fetch_add(len, Ordering::SeqCst);
        if self.idle.swap(false, Ordering::SeqCst) {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Copy `line` to the end of the open segment (opening one, or the next when it would not
    /// fit), under the lock; the segment's number and where the line starts in it.
    fn copy_line(&self, tail: &mut Tail, line: &[u8]) -> Result<(u64, u64), AppendError> {
        let n = line.len() as u64;
        if tail.stopped {
            return Err(AppendError::Stopped);
        }
        let full = tail
            .segments
            .back()
            .is_some_and(|s| tail.file.is_some() && s.len + n > SEGMENT_BYTES);
        if full {
            if let Some(segment) = tail.segments.back_mut() {
                segment.closed = true;
            }
            self.retire(tail);
        }
        let open = match &tail.file {
            Some(f) => f.clone(),
            None => self.open_segment(tail).map_err(AppendError::Io)?,
        };
        let Some(segment) = tail.segments.back_mut() else {
            return Err(AppendError::Io(std::io::Error::other("no open segment")));
        };
        let written = match &open.map {
            Some(map) if segment.len + n <= map.len() as u64 => {
                let at = segment.len as usize;
                // SAFETY: `at + n` is within the mapping (checked above); the journal's
                // lock, held here, orders every copy into it; the lock file keeps other
                // processes out of the directory, and nothing else writes or cuts the file
                // while appends reach it (it is cut only once retired, under this lock,
                // after which no append copies into its mapping).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        line.as_ptr(),
                        map.as_mut_ptr().add(at),
                        line.len(),
                    );
                }
                Ok(())
            }
            Some(_) => Err(std::io::Error::other(
                "the journal segment's mapping is full",
            )),
            None => open.file.write_all_at(line, segment.len),
        };
        match written {
            Ok(()) => {
                let at = (segment.serial, segment.len);
                segment.len += n;
                Ok(at)
            }
            Err(e) => {
                // Part of the line may be in the file: nothing is appended after it.
                segment.closed = true;
                self.retire(tail);
                Err(AppendError::Io(e))
            }
        }
    }

    fn open_segment(&self, tail: &mut Tail) -> std::io::Result<OpenFile> {
        let name = format!(
            "{:013}-{}",
            chrono::Utc::now().timestamp_millis(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let path = segment_path(&self.dir, &name);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let map = match map_segment(&file) {
            Ok(map) => Some(Arc::new(map)),
            Err(e) => {
                // Appended with positioned writes instead; nothing reserved is left behind.
                file.set_len(0)?;
                if !self.unmapped.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, dir = %self.dir.display(), "cannot reserve and map an audit journal segment; appending with a system call per record instead");
                }
                None
            }
        };
        let file = OpenFile {
            file: Arc::new(file),
            map,
        };
        // The new name must survive a power loss as well as its content.
        File::open(&self.dir)?.sync_all()?;
        tail.serial += 1;
        let serial = tail.serial;
        tail.segments.push_back(Segment {
            name,
            len: 0,
            closed: false,
            serial,
        });
        tail.file = Some(file.clone());
        Ok(file)
    }

    /// Close the open segment's file; the syncer syncs it once more and cuts it to its records.
    fn retire(&self, tail: &mut Tail) {
        if let Some(open) = tail.file.take() {
            let len = tail.segments.back().map_or(0, |s| s.len);
            if let Ok(mut r) = self.retired.lock() {
                r.push(Retired { open, len });
            }
        }
    }

    /// Refuse further appends and close the open segment (shutdown).
    pub(crate) fn stop_appending(&self) {
        if let Ok(mut tail) = self.tail.lock() {
            tail.stopped = true;
            if let Some(s) = tail.segments.back_mut() {
                s.closed = true;
            }
            self.retire(&mut tail);
        }
        self.hurry();
    }

    /// Give the journal up (after shutdown): another process may open it.
    pub(crate) fn release(&self) {
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }

    /// Wait until every record appended before this call is copied into the database (at most
    /// [`SETTLE_TIMEOUT`]; after that the trail is read as it is, and a warning says so).
    pub(crate) async fn settle(&self) {
        let target = self.appended.load(Ordering::SeqCst);
        let mut rx = self.ingested.subscribe();
        if *rx.borrow() >= target {
            return;
        }
        self.hurry();
        let caught_up = rx.wait_for(|n| *n >= target);
        if tokio::time::timeout(SETTLE_TIMEOUT, caught_up)
            .await
            .is_err()
        {
            tracing::warn!(
                waiting = target.saturating_sub(*self.ingested.borrow()),
                "the audit trail is read while records still wait in the journal (the database is slow or unavailable)"
            );
        }
    }

    /// Sync what was appended since the last round; whether anything was.
    fn sync_once(&self) -> bool {
        let appended = self.appended_bytes.load(Ordering::SeqCst);
        let retired: Vec<Retired> = self
            .retired
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        if appended == self.synced_bytes.load(Ordering::SeqCst) && retired.is_empty() {
            return false;
        }
        let open = self.tail.lock().ok().and_then(|t| t.file.clone());
        let mut ok = true;
        let mut failed = Vec::new();
        for r in retired {
            // Written back through the mapping, then cut to its records (nothing writes to
            // it any more), then synced with its new length.
            let done = match &r.open.map {
                Some(map) => map
                    .flush()
                    .and_then(|()| r.open.file.set_len(r.len))
                    .and_then(|()| r.open.file.sync_data()),
                None => r.open.file.sync_data(),
            };
            if let Err(e) = done {
                ok = false;
                self.sync_error(&e);
                failed.push(r);
            }
        }
        if let Some(open) = &open {
            if let Err(e) = sync(open) {
                ok = false;
                self.sync_error(&e);
            }
        }
        if ok {
            self.sync_failed.store(false, Ordering::Relaxed);
            self.synced_bytes.store(appended, Ordering::SeqCst);
        } else if let Ok(mut r) = self.retired.lock() {
            r.extend(failed);
        }
        true
    }

    fn sync_error(&self, e: &std::io::Error) {
        if !self.sync_failed.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot sync the audit journal to disk; retrying");
        }
    }

    /// The front segment: its name, whole length, whether closed, its number (0: not ours).
    fn front(&self) -> Option<(String, u64, bool, u64)> {
        let tail = self.tail.lock().ok()?;
        tail.segments
            .front()
            .map(|s| (s.name.clone(), s.len, s.closed, s.serial))
    }

    /// The kept rows of the lines that start at `pos` in segment `serial`, one after the other,
    /// as many as [`batch_len`] takes for `batch`. Rows of lines before `pos` (copied from the
    /// file instead) are dropped.
    fn take_pending(&self, serial: u64, pos: u64, batch: usize) -> Vec<Pending> {
        let Ok(mut tail) = self.tail.lock() else {
            return Vec::new();
        };
        let pending = &mut tail.pending;
        while pending
            .front()
            .is_some_and(|p| p.serial < serial || (p.serial == serial && p.start < pos))
        {
            pending.pop_front();
        }
        let mut at = pos;
        let mut n = 0;
        for p in pending.iter() {
            if n == CATCH_UP * batch || p.serial != serial || p.start != at {
                break;
            }
            at += p.len;
            n += 1;
        }
        pending.drain(..batch_len(n, batch)).collect()
    }

    fn pop_front(&self, name: &str) {
        if let Ok(mut tail) = self.tail.lock() {
            if tail.segments.front().is_some_and(|s| s.name == name) {
                tail.segments.pop_front();
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        segment_path(&self.dir, name)
    }
}

/// Write a segment's records to disk: its mapping (`msync`), or its file (`fdatasync`).
fn sync(open: &OpenFile) -> std::io::Result<()> {
    match &open.map {
        Some(map) => map.flush(),
        None => open.file.sync_data(),
    }
}

/// The syncer: every `interval`, `fdatasync` what was appended since its last round (nothing
/// when idle), on a blocking thread.
pub(crate) async fn sync_loop(
    journal: Arc<Journal>,
    interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => break,
        }
        let j = journal.clone();
        let _ = tokio::task::spawn_blocking(move || j.sync_once()).await;
    }
    let _ = tokio::task::spawn_blocking(move || journal.sync_once()).await;
}

/// What one step of the ingester did.
enum Step {
    /// Copied this many lines.
    Copied(usize),
    /// Finished a segment copied in full.
    Finished,
    /// Nothing to copy.
    Idle,
}

/// The segment being read.
struct Reader {
    name: String,
    file: File,
    pos: u64,
}

/// The ingester: copies the journal into `audit_log`, one transaction per batch of lines.
pub(crate) struct Ingester {
    journal: Arc<Journal>,
    engine: Arc<Engine>,
    stats: Arc<AuditStats>,
    batch: usize,
    reader: Option<Reader>,
    /// The read buffer, [`READ_BYTES`] once first used: allocated and zeroed once, not per
    /// batch (a fresh 4 MiB per step was a few per cent of an audited read under load).
    buf: Vec<u8>,
    /// Marks read at start: where each segment left by a previous run is to be read from.
    marks: HashMap<String, u64>,
}

impl Ingester {
    /// Copy until stopped; once stopped, until the journal is empty.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let journal = self.journal.clone();
        loop {
            match self.step().await {
                Ok(Step::Copied(n)) if n >= self.batch => failures = 0,
                Ok(Step::Copied(_)) => {
                    // A small batch: let the next gather, unless someone waits.
                    failures = 0;
                    journal.gather(&stop).await;
                }
                Ok(Step::Finished) => failures = 0,
                Ok(Step::Idle) => {
                    failures = 0;
                    if *stop.borrow() {
                        return;
                    }
                    // Appenders wake an idle ingester only; look once more after saying so.
                    if !journal.idle.swap(true, Ordering::SeqCst) {
                        continue;
                    }
                    tokio::select! {
                        _ = journal.wake.notified() => {}
                        _ = stop.changed() => {}
                    }
                    journal.idle.store(false, Ordering::SeqCst);
                    journal.gather(&stop).await;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.stats.write_failures.inc();
                    tracing::warn!(error = %e, "cannot copy audit records from the journal into the database; they wait in the journal, retrying");
                    let wait = Duration::from_millis(100u64 << failures.min(6));
                    if *stop.borrow() && failures > 8 {
                        tracing::error!(dir = %self.journal.dir.display(), "stopping with audit records still in the journal: they are copied at the next start");
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Copy one batch, or finish one segment.
    async fn step(&mut self) -> Result<Step, StoreError> {
        self.journal.urgent.store(false, Ordering::SeqCst);
        let Some((name, len, closed, serial)) = self.journal.front() else {
            return Ok(Step::Idle);
        };
        if self.reader.as_ref().is_none_or(|r| r.name != name) {
            let path = self.journal.path(&name);
            let file = File::open(&path).map_err(|e| {
                StoreError::Database(format!("cannot open {}: {e}", path.display()))
            })?;
            let pos = self.marks.remove(&name).unwrap_or(0);
            self.reader = Some(Reader {
                name: name.clone(),
                file,
                pos,
            });
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Step::Idle);
        };
        if reader.pos < len {
            // This process's records from the rows kept at append, when they are the lines at
            // the reader's position; otherwise the lines read from the file and parsed.
            let kept = if serial > 0 {
                self.journal.take_pending(serial, reader.pos, self.batch)
            } else {
                Vec::new()
            };
            let (lens, rows): (Vec<u64>, Vec<Option<Columns>>) = if kept.is_empty() {
                let want = (len - reader.pos).min(READ_BYTES) as usize;
                if self.buf.len() < want {
                    self.buf.resize(READ_BYTES as usize, 0);
                }
                let buf = &mut self.buf[..want];
                reader.file.read_exact_at(buf, reader.pos).map_err(|e| {
                    StoreError::Database(format!("cannot read audit journal {}: {e}", reader.name))
                })?;
                let mut lines: Vec<&[u8]> = buf
                    .split_inclusive(|b| *b == b'\n')
                    .take_while(|line| line.ends_with(b"\n"))
                    .take(CATCH_UP * self.batch)
                    .collect();
                lines.truncate(batch_len(lines.len(), self.batch));
                if lines.is_empty() {
                    return Err(StoreError::Corrupt(format!(
                        "audit journal {}: no whole record at byte {}",
                        reader.name, reader.pos
                    )));
                }
                parse(&lines, &reader.name, reader.pos)
            } else {
                kept.into_iter().map(|p| (p.len, Some(p.row))).unzip()
            };
            let mut consumed = 0u64;
            let copied = copy(
                &self.engine,
                &self.stats,
                &reader.name,
                &mut reader.pos,
                &mut consumed,
                &lens,
                rows,
            )
            .await;
            counted(
                &self.journal,
                &self.stats,
                if serial > 0 { consumed } else { 0 },
                copied,
            )?;
            return Ok(Step::Copied(lens.len()));
        }
        if !closed {
            return Ok(Step::Idle);
        }
        // Copied in full: marked done (synced), the file deleted, the mark forgotten.
        let mut tx = self.engine.store().begin().await?;
        tx.audit_segment_done(&name).await?;
        tx.commit().await?;
        let path = self.journal.path(&name);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(StoreError::Database(format!(
                    "cannot delete {}: {e}",
                    path.display()
                )));
            }
        }
        self.forget(&name).await?;
        self.reader = None;
        self.journal.pop_front(&name);
        Ok(Step::Finished)
    }

    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.engine.store().begin().await?;
        tx.audit_segment_forget(name).await?;
        tx.commit().await
    }
}

/// How many of `available` records (at most [`CATCH_UP`] batches of them) the ingester copies
/// in one transaction: batches of `audit.batch_size` keep each transaction's burst of work
/// short; a backlog of more than two (a slow disk, a busy database) is copied in larger ones.
fn batch_len(available: usize, batch: usize) -> usize {
    let n = available.min(CATCH_UP * batch);
    if n <= 2 * batch {
        n.min(batch)
    } else {
        n
    }
}

/// After a copy: `consumed` lines of this process's records are ingested (waking those who wait
/// for them), and the rows `copied` are counted.
fn counted(
    journal: &Journal,
    stats: &AuditStats,
    consumed: u64,
    copied: Result<u64, StoreError>,
) -> Result<(), StoreError> {
    if consumed > 0 {
        journal.ingested.send_modify(|n| *n += consumed);
    }
    let copied = copied?;
    stats.written.inc_by(copied);
    stats.sealed.inc_by(copied);
    stats.batches.inc();
    Ok(())
}

/// The records of `lines`, read from `segment` at byte `pos`: each line's length, and its row
/// (`None`, logged, for a line that is not a record).
fn parse(lines: &[&[u8]], segment: &str, pos: u64) -> (Vec<u64>, Vec<Option<Columns>>) {
    let mut at = pos;
    lines
        .iter()
        .map(|line| {
            let row = serde_json::from_slice::<Columns>(line)
                .inspect_err(|e| tracing::error!(segment, byte = at, error = %e, "an audit journal line is not a record; left out"))
                .ok();
            at += line.len() as u64;
            (line.len() as u64, row)
        })
        .unzip()
}

/// Copy the records of the lines of `lens` bytes (read from `segment` at `*pos`; `rows[i]` the
/// record of line `i`, `None` if it is not one) into `audit_log`, sealed as they are inserted,
/// moving the segment's mark past them; `*pos` and `*consumed` (lines) follow every mark
/// committed, also when this fails part-way. Returns how many rows were written.
///
/// A line that is not a record (logged by [`parse`]) is left out and counted as dropped. A batch
/// the database keeps refusing is
/// copied line by line: a line it refuses while it still accepts the mark past that line is
/// logged and left out; if it refuses the mark too, the database is what fails, and the lines
/// wait in the journal.
async fn copy(
    engine: &Engine,
    stats: &AuditStats,
    segment: &str,
    pos: &mut u64,
    consumed: &mut u64,
    lens: &[u64],
    rows: Vec<Option<Columns>>,
) -> Result<u64, StoreError> {
    // `good` holds the records in line order, `bad` the lines that are not one.
    let at = *pos + lens.iter().sum::<u64>();
    let mut good: Vec<Columns> = Vec::with_capacity(rows.len());
    let mut bad: Vec<usize> = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        match row {
            Some(row) => good.push(row),
            None => bad.push(i),
        }
    }
    for attempt in 0..ATTEMPTS {
        match write(engine, &good, segment, at).await {
            Ok(()) => {
                stats.dropped.inc_by(bad.len() as u64);
                *pos = at;
                *consumed += lens.len() as u64;
                return Ok(good.len() as u64);
            }
            Err(e) => {
                stats.write_failures.inc();
                tracing::warn!(records = good.len(), attempt = attempt + 1, error = %e, "cannot copy audit records from the journal; retrying");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    let mut records = good.into_iter();
    // `bad` is in line order: found by binary search, not a scan per line.
    let rows = (0..lens.len()).map(|i| {
        if bad.binary_search(&i).is_ok() {
            None
        } else {
            records.next()
        }
    });
    let mut written = 0u64;
    for (len, row) in lens.iter().zip(rows) {
        let end = *pos + len;
        let one: Vec<Columns> = row.into_iter().collect();
        let refused = match write(engine, &one, segment, end).await {
            Ok(()) => false,
            Err(e) => {
                // Past the refused line alone: if the database takes that, the line is what
                // it refuses; if not, the database fails and everything waits.
                write(engine, &[], segment, end).await?;
                for r in &one {
                    log_lost_row(r, &format!("the database refuses it: {e}"));
                }
                true
            }
        };
        if one.is_empty() || refused {
            stats.dropped.inc();
        } else {
            written += 1;
        }
        *pos = end;
        *consumed += 1;
    }
    Ok(written)
}

async fn write(
    engine: &Engine,
    rows: &[Columns],
    segment: &str,
    end: u64,
) -> Result<(), StoreError> {
    let mut tx = engine.store().begin().await?;
    tx.audit_from_journal(rows, segment, end).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, Interaction};

    /// A journal in `dir` with no database behind it: appends, kept rows, the syncer's round.
    fn journal(dir: &Path) -> Journal {
        Journal::new(dir, VecDeque::new(), 1000, None)
    }

    fn row(n: u16) -> Columns {
        let mut r = AuditRecord::new(Interaction::Read, 200);
        r.resource = Some(format!("Patient/p{n}"));
        Columns::of(&r)
    }

    #[test]
    fn kept_rows_are_the_lines_at_the_ingesters_position_and_a_closed_segment_is_cut_to_them() {
        let dir = tempfile::tempdir().expect("dir");
        let j = journal(dir.path());
        for n in 0..5 {
            j.append(row(n)).expect("append");
        }
        let (name, len, closed, serial) = j.front().expect("segment");
        assert!(!closed && serial == 1);
        // The mapped file holds the lines the kept rows stand for, at their places.
        let path = j.path(&name);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), SEGMENT_BYTES);
        let bytes = std::fs::read(&path).expect("read");
        let lines: Vec<&[u8]> = bytes[..len as usize]
            .split_inclusive(|b| *b == b'\n')
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            whole_lines(&File::open(&path).expect("open")).expect("lines"),
            (len, 0)
        );

        // Five rows from the start: more than twice a batch of two, so all of them.
        let kept = j.take_pending(serial, 0, 2);
        assert_eq!(kept.len(), 5);
        let mut at = 0;
        for (k, line) in kept.iter().zip(&lines) {
            assert_eq!(k.start, at);
            assert_eq!(k.len, line.len() as u64);
            let parsed: Columns = serde_json::from_slice(line).expect("line");
            assert_eq!(parsed, k.row);
            at += k.len;
        }
        assert!(j.take_pending(serial, at, 2).is_empty());

        // Three more; the ingester copied the first from the file: that row is dropped, and of
        // the two left, no more than `fewest` are taken at a time.
        for n in 5..8 {
            j.append(row(n)).expect("append");
        }
        let first = j.tail.lock().expect("tail").pending[0].len;
        let kept = j.take_pending(serial, at + first, 1);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].row.entity.as_deref(), Some("Patient/p6"));
        // Not at the ingester's position: nothing, and the row stays.
        assert!(j.take_pending(serial, at, 10).is_empty());
        let last = j.take_pending(serial, at + first + kept[0].len, 10);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].row.entity.as_deref(), Some("Patient/p7"));
        // Once the ingester is on a later segment, this one's rows are dropped.
        j.append(row(8)).expect("append");
        assert!(j.take_pending(serial + 1, 0, 10).is_empty());
        assert!(j.tail.lock().expect("tail").pending.is_empty());

        // Closed and synced: cut to its records.
        j.stop_appending();
        assert!(j.sync_once());
        let (_, len, closed, _) = j.front().expect("segment");
        assert!(closed);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), len);
        assert!(matches!(
            j.append(row(9)),
            Err(Refused {
                error: AppendError::Stopped,
                ..
            })
        ));
    }

    fn lines_of(content: &[u8]) -> (u64, u64) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.journal");
        std::fs::write(&path, content).expect("write");
        whole_lines(&File::open(&path).expect("open")).expect("whole lines")
    }

    #[test]
    fn records_end_at_the_last_line_break_before_the_reserved_zeros() {
        let rec = b"{\"a\":1}\n";
        let two: Vec<u8> = [&rec[..], &rec[..]].concat();
        // Written with `write`: a line cut short, or none.
        assert_eq!(lines_of(&two), (16, 0));
        assert_eq!(lines_of(&[&two[..], b"{\"a\""].concat()), (16, 4));
        assert_eq!(lines_of(b""), (0, 0));
        // Mapped: the rest of the reserved room is zeros, past the 64 KiB read chunk too.
        let mut mapped = two.clone();
        mapped.resize(200_000, 0);
        assert_eq!(lines_of(&mapped), (16, 0));
        // A line being copied when the process died: its start, or its end without its start.
        let mut torn = two.clone();
        torn.extend(b"{\"a\"");
        torn.resize(100_000, 0);
        assert_eq!(lines_of(&torn), (16, 4));
        let mut torn_end = two.clone();
        torn_end.extend([0, 0, 0, b'1', b'}', b'\n']);
        torn_end.resize(70_000, 0);
        assert_eq!(lines_of(&torn_end), (16, 0));
        // Records that reach past the first read chunk.
        let long: Vec<u8> = rec.repeat(10_000);
        let mut long_mapped = long.clone();
        long_mapped.resize(300_000, 0);
        assert_eq!(lines_of(&long_mapped), (80_000, 0));
    }
}
