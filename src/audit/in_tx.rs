//! The audit record of a write, committed in the write's own database transaction: no
//! acknowledged write without its record, whether the process is killed or the disk fills.
//!
//! The request middleware runs each request inside [`scope`] with a maker that turns "what was
//! written, with which status" into the request's [`AuditRecord`]; the engine commits its write
//! transactions through [`commit`], which adds that record to the transaction first. After the
//! response the middleware asks [`Scoped::recorded`] whether a write carried the record, and
//! records only what did not (reads, searches, refusals) through the [`Auditor`](super::Auditor).
//!
//! Outside a request (the forwarding worker, internal writes, tests) [`commit`] just commits.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use super::{AuditRecord, Interaction};
use crate::store::{StoreError, StoreTx};

/// Builds the request's record of a committed write: `(entity written, the Patient id it is
/// about, HTTP status, the interaction when a handler named it)`.
pub type Maker =
    Box<dyn Fn(Option<&str>, Option<&str>, u16, Option<Interaction>) -> Option<AuditRecord>>;

struct Current {
    make: Maker,
    recorded: Rc<Cell<u32>>,
    interaction: RefCell<Option<Interaction>>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// What the middleware keeps of a scope: how many write transactions carried a record.
#[derive(Clone, Default)]
pub struct Scoped(Rc<Cell<u32>>);

impl Scoped {
    pub fn recorded(&self) -> u32 {
        self.0.get()
    }
}

/// Run `f` (a request's handler) with `make` as the maker of its write records.
pub fn scope<F: Future>(make: Maker, f: F) -> (Scoped, impl Future<Output = F::Output>) {
    let recorded = Rc::new(Cell::new(0));
    let current = Current {
        make,
        recorded: recorded.clone(),
        interaction: RefCell::new(None),
    };
    (Scoped(recorded), CURRENT.scope(current, f))
}

/// Name the interaction the current request's writes are (a batch's entries are written one by
/// one, each with its record); outside a request, nothing.
pub fn set_interaction(interaction: Interaction) {
    let _ = CURRENT.try_with(|c| *c.interaction.borrow_mut() = Some(interaction));
}

/// Commit `tx`, with the current request's audit record of this write in it (if there is a
/// request): `entity` is what was written (`Type/id/_history/v`), `citizen` the Patient id it is
/// about, `status` the answer it gets.
pub async fn commit(
    mut tx: Box<dyn StoreTx>,
    entity: Option<&str>,
    citizen: Option<&str>,
    status: u16,
) -> Result<(), StoreError> {
    let record = CURRENT
        .try_with(|c| (c.make)(entity, citizen, status, c.interaction.borrow().clone()))
        .ok()
        .flatten();
    let Some(record) = record else {
        return tx.commit().await;
    };
    tx.audit(&record).await?;
    tx.commit().await?;
    let _ = CURRENT.try_with(|c| c.recorded.set(c.recorded.get() + 1));
    Ok(())
}
