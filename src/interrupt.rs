//! Ctrl-C: the first interrupt stops the engine's running statements and lets
//! the run end cleanly (nothing is published); a second one exits at once,
//! which is safe too, since publishing is one transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::engine::Engine;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static ENGINE: Mutex<Option<Arc<dyn Engine>>> = Mutex::new(None);
static HANDLER: OnceLock<()> = OnceLock::new();

/// Interrupt `engine` on Ctrl-C.
pub fn watch(engine: Arc<dyn Engine>) {
    *ENGINE.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine);
    HANDLER.get_or_init(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("interrupted again: exiting; the published warehouse is unchanged");
                std::process::exit(130);
            }
            eprintln!("interrupting: stopping running statements; nothing will be published (Ctrl-C again to exit at once)");
            if let Some(engine) = ENGINE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                engine.interrupt();
            }
        });
    });
}

/// Stop interrupting the engine (it is about to be closed).
pub fn release() {
    *ENGINE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Set once the user pressed Ctrl-C.
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}
