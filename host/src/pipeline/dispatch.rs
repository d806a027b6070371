//! The dispatcher: lists the source a page at a time (a queue's next page
//! received while this one is admitted), reads requests ahead (each read
//! and its ordering key on a task of its own: an ordering key costs a Wasm
//! instance), and admits them, in source order, to [`keys`].

use super::keys::{self, Admission};
use super::process::refuse;
use super::spans::{RequestSpan, stage};
use super::{Job, Shared};
use crate::error::{Class, StorageError};
use crate::handler::CallError;
use crate::retry::Attempt;
use crate::source::{Fetched, Listed, Page, Version};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

/// A listing under way while the page before it is read and admitted. It
/// ends with the dispatcher, even one dropped (a crash, as the simulation
/// plays it): a receive left running would take messages no one processes.
type Ahead = Option<AbortOnDropHandle<Attempt<Page, StorageError>>>;

/// Lists, reads and admits requests until the source is empty (with
/// `until_empty`) or the run stops. Tasks it starts go to `running`.
pub(super) async fn dispatch(shared: &Arc<Shared>, running: &mut JoinSet<()>) -> Result<(), StorageError> {
    let mut ahead = None;
    let dispatched = dispatch_pages(shared, running, &mut ahead).await;
    // A receive made ahead holds what it gets until the run hands it back:
    // it ends before the source is finished, or its messages would stay
    // invisible for their timeout.
    if let Some(listing) = ahead {
        listing
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    dispatched
}

/// A listing of the source, retried, on a task of its own.
fn list_ahead(shared: &Arc<Shared>) -> AbortOnDropHandle<Attempt<Page, StorageError>> {
    let shared = shared.clone();
    AbortOnDropHandle::new(tokio::spawn(async move {
        shared.retry.run(|| shared.source.list()).await
    }))
}

async fn dispatch_pages(
    shared: &Arc<Shared>,
    running: &mut JoinSet<()>,
    ahead: &mut Ahead,
) -> Result<(), StorageError> {
    let options = &shared.options;
    // Requests found, and taken, during the current pass over the source.
    let mut found_this_pass = 0;
    let mut taken_this_pass = 0;
    // The oldest request this pass has seen, for the source-lag metric.
    let mut oldest_this_pass: Option<SystemTime> = None;
    // Requests done when this pass began, for the progress display.
    let mut done_before_pass = 0;
    while !shared.stop.is_cancelled() {
        // A source that can only be found empty by waiting (a queue's long
        // poll) is asked first whether it knows it is, once nothing is in
        // flight: a run to the end then ends without that wait.
        if options.until_empty
            && ahead.is_none()
            && shared.fates.in_flight() == 0
            && shared.source.known_empty().await
        {
            info!("The source is empty.");
            break;
        }
        let listed = match ahead.take() {
            Some(listing) => listing
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            None => shared.retry.run(|| shared.source.list()).await,
        };
        let page = match listed {
            Attempt::Done(page) => page,
            Attempt::Failed(e) => return Err(e),
            Attempt::Stopped => break,
        };
        // A queue that filled its page is received from again while this
        // page is read and admitted, so that a receive's round trip is not
        // added to every page's. (Not one that did not: its next receive
        // would likely wait out its long poll, and a stop with it. A
        // bucket's pages carry a thousand keys: it lists as it goes.)
        if !shared.source.relists() && page.full && !shared.stop.is_cancelled() {
            *ahead = Some(list_ahead(shared));
        }
        if page.from_start {
            found_this_pass = 0;
            taken_this_pass = 0;
            oldest_this_pass = None;
            done_before_pass = shared.metrics.processed();
            // A queue's receives are all "from the start"; its busy keys
            // stay busy until they have nothing left in the host.
            if shared.source.relists() {
                shared.keys.new_pass();
            }
        }
        let oldest_on_page = page.requests.iter().filter_map(|r| r.modified).min();
        oldest_this_pass = oldest_this_pass.into_iter().chain(oldest_on_page).min();
        if page.reached_end {
            shared.metrics.set_oldest_waiting(oldest_this_pass);
        }
        for odd in &page.set_aside {
            shared.fates.dead_lettered(&odd.name, "-", None, &odd.reason);
        }
        let fresh = shared
            .fates
            .not_held(page.requests, |key| shared.source.pass_over(key));
        found_this_pass += fresh.len();
        shared
            .metrics
            .progress
            .known_at_least(done_before_pass + found_this_pass as u64);
        if fresh.is_empty() {
            if page.reached_end {
                // A whole pass found nothing new and nothing is in flight:
                // whatever is left is stuck, and stays for the next run.
                let idle = shared.fates.in_flight() == 0;
                if options.until_empty && idle && found_this_pass == 0 {
                    info!("The source is empty.");
                    break;
                }
                tokio::select! {
                    biased;
                    _ = shared.stop.cancelled() => break,
                    _ = tokio::time::sleep(options.poll_interval) => {}
                }
            }
            continue;
        }

        let mut prepared = futures::stream::iter(fresh)
            .map(|listed| tokio::spawn(prepare(shared.clone(), listed)))
            .buffered(options.concurrency.ceiling());
        while let Some(next) = prepared.next().await {
            let job = match next.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())) {
                Prepared::Ready(job) => job,
                Prepared::Gone => continue,
                Prepared::Refused {
                    key,
                    version,
                    listed,
                    reason,
                    generation,
                    span,
                } => {
                    span.within(async {
                        let fate = refuse(shared, &key, &version, reason, generation, &span).await;
                        span.ended(&fate);
                        shared.fates.record(&key, None, listed, fate);
                    })
                    .await;
                    continue;
                }
                Prepared::Unreadable(key, e) if e.class == Class::Request => {
                    shared.fates.unreadable(key, &e);
                    continue;
                }
                Prepared::Unreadable(_, e) => {
                    shared.fates.fail(e);
                    return Ok(());
                }
                Prepared::Stopped => return Ok(()),
            };
            match keys::admit(shared, running, job).await {
                Admission::Taken => taken_this_pass += 1,
                Admission::Deferred => {}
                Admission::Stopped => return Ok(()),
            }
            // Reap what has finished, so the set does not grow with the run.
            while let Some(joined) = running.try_join_next() {
                if let Err(e) = joined {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        if page.reached_end && taken_this_pass == 0 {
            // Everything found was held back behind a busy key: wait before
            // looking again, rather than reading the same requests in a loop.
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => break,
                _ = tokio::time::sleep(options.poll_interval) => {}
            }
        }
    }
    Ok(())
}

/// A listed request, read for the dispatcher.
enum Prepared {
    /// Read, with its ordering key.
    Ready(Job),
    /// Processed and removed since it was listed.
    Gone,
    /// To be dead-lettered without its turn, for this reason.
    Refused {
        key: String,
        version: Version,
        listed: Instant,
        reason: String,
        /// The handler generation that failed on it, if one did.
        generation: Option<u64>,
        span: RequestSpan,
    },
    /// It cannot be read; it stays in the source.
    Unreadable(String, StorageError),
    /// The run stopped while the read waited to be retried.
    Stopped,
}

async fn prepare(shared: Arc<Shared>, listed: Listed) -> Prepared {
    let limit = shared.options.max_request_bytes;
    let Listed {
        key,
        size,
        version,
        trace,
        ..
    } = listed;
    let listed = Instant::now();
    let span = RequestSpan::start(&key, &*shared.source, trace.as_ref());
    let fetched = if size > limit {
        // Known too large from the listing: not even read.
        Attempt::Done(Fetched::TooLarge(size, version))
    } else {
        span.in_stage(
            stage::READ,
            None,
            shared.retry.run(|| shared.source.read(&key, limit)),
        )
        .await
    };
    let (body, version) = match fetched {
        Attempt::Done(Fetched::Request(body, version)) => (body, version),
        Attempt::Done(Fetched::Gone) => return Prepared::Gone,
        Attempt::Done(Fetched::TooLarge(size, version)) => {
            let reason = format!(
                "request too large: {size} bytes, over the limit of {limit} (--max-request-bytes); not read"
            );
            return Prepared::Refused {
                key,
                version,
                listed,
                reason,
                generation: None,
                span,
            };
        }
        Attempt::Failed(e) => return Prepared::Unreadable(key, e),
        Attempt::Stopped => return Prepared::Stopped,
    };
    let (handler, generation) = shared.handlers.current_generation();
    span.record("handler.generation", generation as i64);
    let widget = match span
        .in_stage(stage::ORDERING_KEY, None, handler.ordering_key(&body))
        .await
    {
        Ok(widget) => widget,
        // A handler that traps or runs out of time or memory on this
        // request's key will do so again: the request is its own fault.
        Err(CallError::Handler(reason)) => {
            let reason = format!("handler failed in ordering-key: {reason}");
            // A candidate in shadow is asked about it all the same.
            if let Some(shadow) = &shared.observers.shadow {
                shadow.compare_failed_key(&key, &body, reason.clone(), &shared.sink);
            }
            return Prepared::Refused {
                key,
                version,
                listed,
                reason,
                generation: Some(generation),
                span,
            };
        }
        Err(CallError::Store(e)) => {
            span.within(async { warn!(request_key = %key, error = %e, "Handler gave no ordering key.") })
                .await;
            None
        }
    };
    if let Some(widget) = &widget {
        span.record("widget.key", widget.as_str());
    }
    Prepared::Ready(Job {
        key,
        body,
        version,
        widget,
        seq: 0,
        listed,
        span,
        waiting: None,
    })
}
