//! The handler: a WebAssembly component implementing `wit/handler.wit`,
//! compiled once and called in a fresh, sandboxed instance per request.
//!
//! - [`bindings`]: the WIT world's Rust side, and conversions to [`crate::contract`];
//! - [`sandbox`]: the store each call runs in, its time limit;
//! - [`pool`]: the engines, and the instance slots calls take;
//! - [`limiter`]: the memory, tables and instances a call may create;
//! - [`output`]: the bounds on what a call logs and plans;
//! - [`imports`]: what the handler may call (`store.get`, `log.log`);
//! - [`swap`]: replacing the handler of a running host.

mod bindings;
mod call;
mod imports;
mod limiter;
mod output;
mod pool;
mod sandbox;
mod stderr;
pub(crate) mod swap;

use crate::contract::{Context, Plan};
use crate::error::StorageError;
use crate::sink::Read;
use anyhow::Context as _;
use bindings::{WidgetHandler, WidgetHandlerPre};
use output::Logs;
use pool::{Engines, InstanceSlots};
use sandbox::GuestState;
pub use sandbox::Limits;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

/// The default widget handler, built from `guest/` by `build.rs`.
pub const BUILTIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/widget_guest.wasm"));

/// Which handler to run: the word `builtin`, or a component file. Every
/// command spells it the same way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Choice {
    /// The widget handler embedded in the binary.
    #[default]
    Builtin,
    /// A component file.
    File(PathBuf),
}

impl std::str::FromStr for Choice {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Choice, Self::Err> {
        Ok(match text {
            "builtin" => Choice::Builtin,
            path => Choice::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for Choice {
    /// As the command line spells it: `builtin`, or the file's path.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Choice::Builtin => f.write_str("builtin"),
            Choice::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A handler to load, and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Which handler.
    pub choice: Choice,
    /// Time and memory per call.
    pub limits: Limits,
    /// Whether compiled components go to wasmtime's disk cache.
    pub compile_cache: bool,
}

impl Default for Spec {
    /// The built-in handler, under the default limits, cached.
    fn default() -> Self {
        Spec {
            choice: Choice::Builtin,
            limits: Limits::default(),
            compile_cache: true,
        }
    }
}

/// Why a call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The handler trapped, ran out of time or memory, or broke the
    /// contract: the request is to be dead-lettered.
    #[error("handler failed: {0}")]
    Handler(String),
    /// The store could not be read, for a reason that is not the
    /// request's (it did not answer in time, it is throttling, the
    /// credentials expired): the request is to be retried later, or the run
    /// stopped, never dead-lettered.
    #[error("handler could not read the store: {0}")]
    Store(#[source] StorageError),
}

impl crate::retry::Transient for CallError {
    fn is_transient(&self) -> bool {
        matches!(self, CallError::Store(e) if e.is_transient())
    }

    fn is_throttling(&self) -> bool {
        matches!(self, CallError::Store(e) if e.throttling)
    }
}

/// A handler's answer to one request.
#[derive(Debug)]
pub struct Handled {
    /// The plan, or the handler's reason for rejecting the request.
    pub verdict: Result<Plan, String>,
    /// How many `warn` lines the handler logged.
    pub warnings: u32,
    /// What the handler logged, in order: (level, message); at most 100 lines.
    pub logs: Logs,
}

/// A compiled handler, ready to be instantiated once per request (or,
/// with `Limits::reuse`, once per that many requests).
#[derive(Clone)]
pub struct Handler {
    /// What it and its replacements compile on.
    engines: Arc<Engines>,
    /// The engine it was compiled on.
    engine: Engine,
    /// The pool slots its instances take; `None`: not pooled.
    slots: Option<InstanceSlots>,
    pre: WidgetHandlerPre<GuestState>,
    limits: Limits,
    /// Instances that answered `ordering-key`, kept for the next: the
    /// contract lets an ordering key be asked of one (see
    /// `wit/handler.wit`), so a request costs one instance, its handling's.
    key_shelf: Arc<Shelf>,
    /// Instances waiting for their next `handle`, with `Limits::reuse`.
    handle_shelf: Arc<Shelf>,
    /// A digest of the component's bytes, to tell another from the same.
    digest: u64,
}

/// How many `ordering-key` calls one instance answers before a new one
/// takes over: what a slow leak in a handler's ordering key may grow to
/// is bounded by the memory limit all the same, and a fresh instance every
/// so often sheds it.
const KEY_CALLS_PER_INSTANCE: usize = 10_000;

/// Instances kept for further calls of one export.
#[derive(Default)]
struct Shelf(std::sync::Mutex<Vec<Warm>>);

impl Shelf {
    /// How many instances are kept.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// How long a compile goes on before it is said to be under way: a
/// Python or JavaScript handler carries its interpreter, and its first
/// compile takes half a minute or more.
const SLOW_COMPILE: std::time::Duration = std::time::Duration::from_secs(2);

/// Says, once a compile has taken [`SLOW_COMPILE`], that it is under way
/// (on stderr whatever the command's level: see `logging::COMPILING`);
/// dropped when the compile ends.
struct SlowCompile {
    /// Dropped, it tells the watcher the compile ended.
    _ended: Option<std::sync::mpsc::Sender<()>>,
}

impl SlowCompile {
    fn watch(name: &str, bytes: usize) -> SlowCompile {
        let (done, ended) = std::sync::mpsc::channel::<()>();
        let name = name.to_owned();
        let spawned = std::thread::Builder::new()
            .name("slow-compile".into())
            .spawn(move || {
                if ended.recv_timeout(SLOW_COMPILE) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    tracing::info!(
                        target: crate::logging::COMPILING,
                        "Compiling {name} ({:.1} MB) to machine code: a first compile takes up to a minute; later ones come from the compile cache.",
                        bytes as f64 / 1e6
                    );
                }
            });
        SlowCompile {
            _ended: spawned.ok().map(|_| done),
        }
    }
}

/// Why `bytes` cannot be a component, before the compiler says it less
/// plainly (a text file read as the text format fails on its first
/// character): `None` for a component's header, or text that may be one in
/// the text format (WAT).
fn not_a_component(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    const BUILD: &str =
        "build one with your project's build script (widget-host new-handler writes one), or give `builtin`";
    match bytes.strip_prefix(MAGIC) {
        // A component's layer is 1 (bytes 6 and 7); a core module's is 0.
        Some(rest) if rest.len() >= 4 && rest[2..4] == [0, 0] => Some(format!(
            "it is a core Wasm module; a handler is a component (wasm32-wasip2, or `wasm-tools component new`): {BUILD}"
        )),
        Some(_) => None,
        None => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
            let start = text.trim_start();
            if start.starts_with('(') || start.starts_with(";;") {
                return None;
            }
            let shown: String = start.chars().take(16).flat_map(char::escape_default).collect();
            Some(format!(
                "a component starts with the bytes \\0asm, and this starts with \"{shown}\"; {BUILD}"
            ))
        }
    }
}

/// A digest of a component's bytes.
pub(crate) fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// An instance kept for further calls.
struct Warm {
    store: wasmtime::Store<GuestState>,
    bindings: WidgetHandler,
    /// Calls it has served.
    calls: usize,
    /// Its pool slot: after the store, so that it is given back only once
    /// the store (and the instance in the slot) is gone.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Handler {
    /// Reads and compiles the handler `spec` names, on a new engine.
    pub fn load(spec: &Spec) -> anyhow::Result<Handler> {
        let engines = Engines::new(spec.compile_cache, spec.limits.memory, pool::INSTANCES)?;
        Handler::load_on(&Arc::new(engines), &spec.choice, spec.limits)
    }

    /// Reads and compiles `choice` on `engines`.
    pub(crate) fn load_on(
        engines: &Arc<Engines>,
        choice: &Choice,
        limits: Limits,
    ) -> anyhow::Result<Handler> {
        let (name, wasm) = match choice {
            Choice::File(path) => (
                path.display().to_string(),
                std::fs::read(path).with_context(|| format!("cannot read handler {}", path.display()))?,
            ),
            Choice::Builtin => ("built-in widget handler".to_owned(), BUILTIN.to_vec()),
        };
        Handler::load_bytes_on(engines, &name, &wasm, limits)
    }

    /// Compiles the handler `wasm`, read from `name`, on `engines`.
    fn load_bytes_on(
        engines: &Arc<Engines>,
        name: &str,
        wasm: &[u8],
        limits: Limits,
    ) -> anyhow::Result<Handler> {
        let started = std::time::Instant::now();
        if let Some(why) = not_a_component(wasm) {
            anyhow::bail!("{name} is not a Wasm component: {why}");
        }
        let compiling = SlowCompile::watch(name, wasm.len());
        let handler = Handler::compile(engines, wasm, limits)
            .with_context(|| format!("{name} is not a usable widget-handler component"))?;
        drop(compiling);
        tracing::info!(handler = %name, bytes = wasm.len(), compile_ms = started.elapsed().as_millis() as u64, "Handler loaded.");
        Ok(handler)
    }

    /// Compiles a component on a new engine without its disk cache, and
    /// checks that it exports the widget-handler world and imports nothing
    /// the host does not provide.
    /// Its instances map their own memory (no pool): for `check`, and for
    /// tests that make many handlers.
    pub fn from_bytes(wasm: &[u8], limits: Limits) -> anyhow::Result<Handler> {
        Handler::compile(&Arc::new(Engines::on_demand(false)?), wasm, limits)
    }

    /// Compiled as `run` compiles it: its instances from a pool of
    /// `instances` slots, if it fits one (see `pool.rs`); no disk cache.
    pub fn from_bytes_pooled(wasm: &[u8], limits: Limits, instances: u32) -> anyhow::Result<Handler> {
        let engines = Engines::new(false, limits.memory, instances)?;
        Handler::compile(&Arc::new(engines), wasm, limits)
    }

    /// Whether its instances come from the pool.
    pub fn pooled(&self) -> bool {
        self.slots.is_some()
    }

    fn compile(engines: &Arc<Engines>, wasm: &[u8], limits: Limits) -> anyhow::Result<Handler> {
        if let Some(why) = not_a_component(wasm) {
            anyhow::bail!("not a Wasm component: {why}");
        }
        let (pre, engine, slots) = engines.compile(|engine| {
            let component = Component::new(engine, wasm)?;
            let mut linker = Linker::<GuestState>::new(engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            WidgetHandler::add_to_linker::<_, HasSelf<GuestState>>(&mut linker, |s| s)?;
            Ok(WidgetHandlerPre::new(linker.instantiate_pre(&component)?)?)
        })?;
        Ok(Handler {
            engines: engines.clone(),
            engine,
            slots,
            pre,
            limits,
            key_shelf: Arc::default(),
            handle_shelf: Arc::default(),
            digest: digest(wasm),
        })
    }

    /// A digest of the component's bytes (not a cryptographic one: it
    /// tells a changed handler file from the same).
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    /// The engines the handler was compiled on; a replacement uses them.
    pub(crate) fn engines(&self) -> &Arc<Engines> {
        &self.engines
    }

    /// A pool slot for a new instance, once one is free; `None` if the
    /// handler is not pooled.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        match &self.slots {
            Some(slots) => Some(slots.take().await),
            None => None,
        }
    }

    /// The limits each call runs under.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether instances serve several calls.
    fn reuses(&self) -> bool {
        self.limits.reuse > 1
    }

    /// An instance kept on `shelf`, readied for a call about `request_key`
    /// that reads `reader`, or a new one made for `export`; whether it was
    /// kept.
    async fn warm(
        &self,
        shelf: &Shelf,
        export: &Export<'_>,
        reader: Option<Arc<dyn Read>>,
        request_key: String,
    ) -> Result<(Warm, bool), CallError> {
        let kept = shelf.0.lock().unwrap().pop();
        if let Some(mut warm) = kept {
            sandbox::begin_call(&mut warm.store, self.limits, reader, request_key);
            return Ok((warm, true));
        }
        self.engines.made.one_more(export.is_key());
        Ok((self.instance(reader, request_key).await?, false))
    }

    /// A new instance, for a call about `request_key` that reads `reader`.
    async fn instance(&self, reader: Option<Arc<dyn Read>>, request_key: String) -> Result<Warm, CallError> {
        let slot = self.slot().await;
        let mut store = sandbox::new_store(&self.engine, self.limits, reader, request_key);
        let waiting = store.data().call.clocks();
        match sandbox::bounded(self.limits, waiting, self.pre.instantiate_async(&mut store)).await {
            Ok(bindings) => Ok(Warm {
                store,
                bindings,
                calls: 0,
                _slot: slot,
            }),
            Err(error) => Err(sandbox::finish::<()>(store, Err(error))
                .err()
                .expect("a failed instantiation fails")),
        }
    }

    /// Makes one instance and drops it: a handler that cannot even start
    /// under its limits (a memory limit below what its start needs) is
    /// refused before any request, rather than failing every one of them.
    pub(crate) async fn check_starts(&self) -> anyhow::Result<()> {
        match self.instance(None, String::new()).await {
            Ok(_) => Ok(()),
            Err(CallError::Handler(reason)) => {
                anyhow::bail!(
                    "the handler cannot start under its limits, so it would fail every request: {reason}"
                )
            }
            Err(CallError::Store(e)) => Err(e.into()),
        }
    }

    /// Keeps `warm` on `shelf` for another call, unless its call failed (a
    /// trap may leave it broken), it has served `calls`, or a call may be
    /// waiting for the pool slot it holds.
    fn put_back(&self, shelf: &Shelf, calls: usize, mut warm: Warm, succeeded: bool) {
        warm.calls += 1;
        let slot_wanted = self.slots.as_ref().is_some_and(|slots| !slots.any_free());
        if succeeded && warm.calls < calls && !slot_wanted {
            sandbox::end_call(&mut warm.store, self.limits);
            shelf.0.lock().unwrap().push(warm);
        }
    }

    /// Instances made so far on this handler's engines (its replacements'
    /// too), for `ordering-key` and for `handle`.
    #[cfg(test)]
    fn instances_made(&self) -> (u64, u64) {
        self.engines.made.get()
    }

    /// The handler's ordering key for a request.
    pub async fn ordering_key(&self, request: &[u8]) -> Result<Option<String>, CallError> {
        match self
            .call(Export::OrderingKey(request), None, String::new())
            .await?
            .value
        {
            Answer::OrderingKey(key) => Ok(key.map(output::bounded_key)),
            Answer::Handle(_) => unreachable!("ordering-key answers with a key"),
        }
    }

    /// Asks the handler what to do with a request. The handler reads the
    /// destination through `store`, which can do nothing else.
    pub async fn handle(
        &self,
        request: &[u8],
        context: &Context,
        store: Arc<dyn Read>,
    ) -> Result<Handled, CallError> {
        let wit_context = context.into();
        let export = Export::Handle(request, &wit_context);
        let finished = self.call(export, Some(store), context.key.clone()).await?;
        let Answer::Handle(answer) = finished.value else {
            unreachable!("handle answers with a plan or a rejection")
        };
        let verdict = match answer {
            Ok(plan) => {
                let mut plan = Plan::from(plan);
                plan.kind = output::bounded_kind(plan.kind);
                output::check_plan(&plan, self.limits.plan()).map_err(CallError::Handler)?;
                Ok(plan)
            }
            Err(rejection) => Err(output::bounded_reason(rejection.reason)),
        };
        Ok(Handled {
            verdict,
            warnings: finished.warnings,
            logs: finished.logs,
        })
    }

    /// The one way an export is called: on a kept instance where instances
    /// serve several calls (`ordering-key` always, as the contract allows;
    /// `handle` with `--handler-reuse`), else on a fresh one; each bounded
    /// by the call's limits. A kept instance's failure may be an earlier
    /// call's doing: the call is made once more on a fresh instance, and
    /// its outcome is the answer.
    async fn call(
        &self,
        export: Export<'_>,
        reader: Option<Arc<dyn Read>>,
        request_key: String,
    ) -> Result<sandbox::Finished<Answer>, CallError> {
        let shelf = match export {
            Export::OrderingKey(_) => Some((&self.key_shelf, KEY_CALLS_PER_INSTANCE)),
            Export::Handle(..) => self.reuses().then_some((&self.handle_shelf, self.limits.reuse)),
        };
        if let Some((shelf, calls)) = shelf {
            let (mut warm, kept) = self
                .warm(shelf, &export, reader.clone(), request_key.clone())
                .await?;
            let waiting = warm.store.data().call.clocks();
            let result =
                sandbox::bounded(self.limits, waiting, export.call(&warm.bindings, &mut warm.store)).await;
            let finished = sandbox::finish_call(&mut warm.store, result);
            self.put_back(shelf, calls, warm, finished.is_ok());
            match finished {
                Err(CallError::Handler(_)) if kept => {}
                finished => return finished,
            }
        }
        self.engines.made.one_more(export.is_key());
        // Declared before the store: dropped after it, the instance gone.
        let _slot = self.slot().await;
        let mut store = sandbox::new_store(&self.engine, self.limits, reader, request_key);
        let waiting = store.data().call.clocks();
        let result = sandbox::bounded(self.limits, waiting, async {
            let bindings = self.pre.instantiate_async(&mut store).await?;
            export.call(&bindings, &mut store).await
        })
        .await;
        sandbox::finish(store, result)
    }
}

/// An export of the world, with what it is called with.
enum Export<'a> {
    OrderingKey(&'a [u8]),
    Handle(&'a [u8], &'a bindings::types::Context),
}

/// What an export answered.
enum Answer {
    OrderingKey(Option<String>),
    Handle(Result<bindings::types::Plan, bindings::types::Rejection>),
}

impl Export<'_> {
    /// Whether it is `ordering-key`.
    fn is_key(&self) -> bool {
        matches!(self, Export::OrderingKey(_))
    }

    /// Calls the export on an instance.
    async fn call(
        &self,
        bindings: &WidgetHandler,
        store: &mut wasmtime::Store<GuestState>,
    ) -> wasmtime::Result<Answer> {
        Ok(match *self {
            Export::OrderingKey(request) => {
                Answer::OrderingKey(bindings.call_ordering_key(store, request).await?)
            }
            Export::Handle(request, context) => {
                Answer::Handle(bindings.call_handle(store, request, context).await?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_that_is_no_component_is_named_as_such_with_what_to_do() {
        let text = not_a_component(b"hello\n").unwrap();
        assert!(text.contains(r#"starts with "hello\n""#), "{text}");
        assert!(
            not_a_component(b"\0asm\x01\0\0\0")
                .unwrap()
                .contains("core Wasm module")
        );
        assert_eq!(not_a_component(b"\0asm\x0d\0\x01\0"), None);
        assert_eq!(not_a_component(b"  (component)"), None);
        let error = Handler::from_bytes(b"hello", Limits::default()).err().unwrap();
        assert!(format!("{error:#}").contains("not a Wasm component"), "{error:#}");
    }

    use super::*;
    use crate::contract::Destination;
    use crate::error::Class;
    use std::time::Duration;

    /// A store whose reads never answer.
    struct Hung;

    #[async_trait::async_trait]
    impl Read for Hung {
        async fn get(&self, _key: &str) -> Result<Option<String>, StorageError> {
            std::future::pending().await
        }
    }

    /// A store whose reads fail as `class` says.
    struct Failing(Class);

    #[async_trait::async_trait]
    impl Read for Failing {
        async fn get(&self, key: &str) -> Result<Option<String>, StorageError> {
            Err(StorageError::new(format!("get {key}"), self.0, "no"))
        }
    }

    const UPDATE: &[u8] =
        br#"{"type":"update","requestId":"r","widgetId":"w1","owner":"Sue Smith","label":"x"}"#;

    fn context() -> Context {
        Context {
            key: "k".into(),
            destination: Destination::ObjectStore,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_read_that_never_answers_is_the_stores_fault_not_the_requests() {
        let handler = Handler::from_bytes(BUILTIN, Limits::default()).unwrap();
        let error = handler
            .handle(UPDATE, &context(), Arc::new(Hung))
            .await
            .unwrap_err();
        let CallError::Store(failure) = &error else {
            panic!("{error}")
        };
        assert_eq!(failure.class, Class::Transient, "{error}");
        assert!(error.to_string().contains("no answer within 10s"), "{error}");
        assert!(crate::retry::Transient::is_transient(&error));
    }

    #[tokio::test]
    async fn a_store_read_fails_the_call_unless_it_is_the_requests_own_fault() {
        let handler = Handler::from_bytes(BUILTIN, Limits::default()).unwrap();
        for class in [Class::Transient, Class::Fatal] {
            let error = handler
                .handle(UPDATE, &context(), Arc::new(Failing(class)))
                .await
                .unwrap_err();
            assert!(
                matches!(&error, CallError::Store(e) if e.class == class),
                "{error}"
            );
        }
        // A read the request made impossible: the handler is told, and
        // decides (the built-in one refuses the request).
        let handled = handler
            .handle(UPDATE, &context(), Arc::new(Failing(Class::Request)))
            .await
            .unwrap();
        assert!(handled.verdict.is_err());
    }

    /// A store whose reads take a while: calls overlap.
    struct Slow;

    #[async_trait::async_trait]
    impl Read for Slow {
        async fn get(&self, _key: &str) -> Result<Option<String>, StorageError> {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(None)
        }
    }

    /// The built-in handler on a pool of `instances` slots.
    fn pooled(instances: u32, limits: Limits) -> Handler {
        let handler = Handler::from_bytes_pooled(BUILTIN, limits, instances).unwrap();
        assert!(handler.pooled(), "the built-in handler fits the pool");
        handler
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_beyond_the_pools_slots_wait_for_one_and_none_fails() {
        for reuse in [0, 1000] {
            let handler = pooled(
                2,
                Limits {
                    reuse,
                    ..Limits::default()
                },
            );
            let calls: Vec<_> = (0..40)
                .map(|_| {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        handler.ordering_key(UPDATE).await?;
                        handler.handle(UPDATE, &context(), Arc::new(Slow)).await
                    })
                })
                .collect();
            let expected = Handler::from_bytes(BUILTIN, Limits::default())
                .unwrap()
                .handle(UPDATE, &context(), Arc::new(Slow))
                .await
                .unwrap()
                .verdict;
            for call in calls {
                let handled = call.await.unwrap().unwrap();
                assert_eq!(format!("{:?}", handled.verdict), format!("{expected:?}"));
            }
        }
    }

    #[test]
    fn a_component_that_does_not_fit_a_pool_slot_is_compiled_without_the_pool() {
        let engines = Engines::new(false, Limits::default().memory, 2).unwrap();
        let with_memories = |count: usize| {
            let memories = "(memory 1) ".repeat(count);
            format!("(component (core module $m {memories}) (core instance (instantiate $m)))")
        };
        let compile = |wat: String| move |engine: &Engine| Ok(Component::new(engine, wat.as_bytes())?);
        let (_, _, slots) = engines.compile(compile(with_memories(4))).unwrap();
        assert!(slots.is_some(), "four memories fit a slot");
        let (_, _, slots) = engines.compile(compile(with_memories(5))).unwrap();
        assert!(slots.is_none(), "five do not: compiled, without the pool");
        assert!(
            engines
                .compile(compile("(component (core module $m (bad)))".into()))
                .is_err()
        );
    }

    /// The hostile test handler, its instances serving up to 1,000 calls,
    /// and an empty store.
    fn reused_hostile() -> (Handler, Arc<dyn Read>) {
        let limits = Limits {
            reuse: 1000,
            ..Limits::default()
        };
        let sink: Arc<dyn Read> = Arc::new(crate::sink::memory::MemorySink::new(Destination::ObjectStore));
        let hostile = std::fs::read(concat!(env!("WIDGET_HOST_TEST_GUESTS"), "/hostile_guest.wasm")).unwrap();
        (Handler::from_bytes(&hostile, limits).unwrap(), sink)
    }

    #[tokio::test]
    async fn a_reused_instance_shows_no_call_the_stderr_of_another() {
        let (hostile, sink) = reused_hostile();
        // A line of stderr per call: far more than one call may keep.
        for i in 0..200 {
            let request = format!("chatty {i} {}", "x".repeat(60));
            let handled = hostile.handle(request.as_bytes(), &context(), sink.clone()).await;
            assert!(handled.is_ok(), "call {i}: {:?}", handled.err());
        }
        assert_eq!(hostile.handle_shelf.kept(), 1, "one instance served them all");
        let Err(CallError::Handler(reason)) = hostile.handle(b"trap", &context(), sink).await else {
            panic!("a trap fails the call");
        };
        assert!(reason.contains("deliberate trap"), "{reason}");
        assert!(!reason.contains("chatty"), "only this call's stderr: {reason}");
    }

    #[tokio::test]
    async fn a_call_failing_on_a_reused_instance_is_tried_once_on_a_fresh_one() {
        let (hostile, sink) = reused_hostile();
        hostile.handle(b"poison", &context(), sink.clone()).await.unwrap();
        // The kept instance traps on anything now; a fresh one does not.
        let handled = hostile.handle(b"echo", &context(), sink.clone()).await.unwrap();
        assert_eq!(handled.verdict.unwrap().kind, "echo");
        // A request that fails on a fresh instance too is the request's.
        let Err(CallError::Handler(reason)) = hostile.handle(b"trap", &context(), sink).await else {
            panic!("a trap fails the call");
        };
        assert!(
            reason.contains("deliberate trap") && !reason.contains("poisoned"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn ordering_keys_are_answered_by_one_kept_instance_and_each_handle_by_its_own() {
        let handler = Handler::from_bytes(BUILTIN, Limits::default()).unwrap();
        let sink: Arc<dyn Read> = Arc::new(crate::sink::memory::MemorySink::new(Destination::ObjectStore));
        for i in 0..50 {
            let request = format!(
                r#"{{"type":"create","requestId":"r","widgetId":"w{i}","owner":"Sue Smith","label":"L"}}"#
            );
            let key = handler.ordering_key(request.as_bytes()).await.unwrap();
            assert_eq!(key, Some(format!("w{i}")));
            handler
                .handle(request.as_bytes(), &context(), sink.clone())
                .await
                .unwrap();
        }
        assert_eq!(
            handler.instances_made(),
            (1, 50),
            "one instance for every ordering key, a fresh one for each handle"
        );
    }

    #[tokio::test]
    async fn an_ordering_key_failing_on_a_kept_instance_is_asked_again_of_a_fresh_one() {
        let hostile = std::fs::read(concat!(env!("WIDGET_HOST_TEST_GUESTS"), "/hostile_guest.wasm")).unwrap();
        let hostile = Handler::from_bytes(&hostile, Limits::default()).unwrap();
        assert_eq!(
            hostile.ordering_key(b"key-poison").await.unwrap().as_deref(),
            Some("key-poison")
        );
        // The kept instance traps on every ordering key now: it is dropped,
        // and a fresh one answers.
        assert_eq!(
            hostile.ordering_key(b"echo").await.unwrap().as_deref(),
            Some("echo")
        );
        assert_eq!(hostile.instances_made().0, 2);
        // The next key makes a new instance to keep, which serves the rest.
        for _ in 0..3 {
            assert_eq!(
                hostile.ordering_key(b"echo").await.unwrap().as_deref(),
                Some("echo")
            );
        }
        assert_eq!(hostile.instances_made().0, 3);
        // A request that traps on a fresh instance too is the request's.
        let Err(CallError::Handler(reason)) = hostile.ordering_key(b"key-trap").await else {
            panic!("a trap fails the call");
        };
        assert!(
            reason.contains("deliberate trap") && !reason.contains("poisoned"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_reused_instance_serves_its_share_of_calls_and_none_after_a_failure() {
        let limits = Limits {
            reuse: 3,
            ..Limits::default()
        };
        let sink: Arc<dyn Read> = Arc::new(crate::sink::memory::MemorySink::new(Destination::ObjectStore));
        let handler = Handler::from_bytes(BUILTIN, limits).unwrap();
        let create = br#"{"type":"create","requestId":"r","widgetId":"w1","owner":"Sue Smith","label":"L"}"#;
        for call in 1..=7 {
            let key = handler.ordering_key(create).await.unwrap();
            assert_eq!(key.as_deref(), Some("w1"));
            let handled = handler.handle(create, &context(), sink.clone()).await.unwrap();
            assert_eq!(handled.verdict.unwrap().kind, "create");
            // One instance, kept until it has served three calls.
            assert!(handler.handle_shelf.kept() <= 1, "call {call}");
        }
        // A call that fails leaves no instance behind.
        let hostile = std::fs::read(concat!(env!("WIDGET_HOST_TEST_GUESTS"), "/hostile_guest.wasm")).unwrap();
        let hostile = Handler::from_bytes(&hostile, limits).unwrap();
        hostile.handle(b"echo", &context(), sink.clone()).await.unwrap();
        assert_eq!(hostile.handle_shelf.kept(), 1);
        assert!(hostile.handle(b"trap", &context(), sink.clone()).await.is_err());
        assert_eq!(hostile.handle_shelf.kept(), 0, "a trapped instance is dropped");
        assert!(
            hostile
                .handle(b"echo", &context(), sink)
                .await
                .unwrap()
                .verdict
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_time_limit_counts_a_calls_own_computing_not_its_wait_for_a_core() {
        let hostile = std::fs::read(concat!(env!("WIDGET_HOST_TEST_GUESTS"), "/hostile_guest.wasm")).unwrap();
        let with_limit = |time: Duration| {
            Handler::from_bytes(
                &hostile,
                Limits {
                    time,
                    ..Limits::default()
                },
            )
            .unwrap()
        };
        let sink: Arc<dyn Read> = Arc::new(crate::sink::memory::MemorySink::new(Destination::ObjectStore));
        // A request that takes one call alone at least 40 ms.
        let calibrating = with_limit(Duration::from_secs(60));
        let (mut millions, mut alone) = (1u64, Duration::ZERO);
        while alone < Duration::from_millis(40) {
            millions *= 2;
            let started = std::time::Instant::now();
            let burn = format!("burn {millions}");
            calibrating
                .handle(burn.as_bytes(), &context(), sink.clone())
                .await
                .unwrap();
            alone = started.elapsed();
        }
        // Four times that each; 24 at once on two threads take about twelve
        // times as long by the clock on the wall, each.
        let handler = Arc::new(with_limit(alone * 4));
        let calls: Vec<_> = (0..24)
            .map(|_| {
                let (handler, sink) = (handler.clone(), sink.clone());
                tokio::spawn(async move {
                    let burn = format!("burn {millions}");
                    handler
                        .handle(burn.as_bytes(), &context(), sink)
                        .await
                        .map(|_| ())
                })
            })
            .collect();
        for call in calls {
            let answered = call.await.unwrap();
            assert!(
                answered.is_ok(),
                "a busy host failed a call within its limit: {answered:?}"
            );
        }
        // A call that does compute more than its limit still fails.
        let over = format!("burn {}", millions * 40);
        let Err(CallError::Handler(reason)) = handler.handle(over.as_bytes(), &context(), sink).await else {
            panic!("forty times the calibrated work passed a limit of four");
        };
        assert!(reason.starts_with("time limit exceeded"), "{reason}");
    }
}
