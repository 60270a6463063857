//! The replay guard's memory, measured: a counting allocator (this test binary's global
//! allocator) weighs the default `SealBook` filled to its limit with WeChat-shaped pairs,
//! and checks that it covers the ingest target (20,000 pushes a second) for at least
//! 30 s — WeChat's three tries — before it has to shorten the window it accepts.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use wechat_qr::events::{DEFAULT_MAX_SEALS, Seal, SealBook, SealCheck, SealKind};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout, same contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TARGET_PER_SECOND: u64 = 20_000;

#[test]
fn the_default_memory_covers_thirty_seconds_of_the_ingest_target_in_compact_entries() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let before = LIVE.load(Ordering::Relaxed);
    let book = SealBook::new(Duration::from_secs(300), DEFAULT_MAX_SEALS, None).unwrap();
    // 20,000 a second from `seconds` ago up to now, each pair distinct, as WeChat's
    // nine-to-ten-digit nonces are.
    let seconds = DEFAULT_MAX_SEALS as u64 / TARGET_PER_SECOND;
    assert!(seconds >= 30, "the default memory covers only {seconds} s");
    let mut digest = [0; 32];
    for i in 0..seconds * TARGET_PER_SECOND {
        digest[..8].copy_from_slice(&i.to_le_bytes());
        let sealed = book.check(Seal {
            timestamp: now - seconds + i / TARGET_PER_SECOND,
            nonce: (1_000_000_000 + i).to_string(),
            digest,
            kind: SealKind::Plaintext,
        });
        assert_eq!(sealed.check, SealCheck::Fresh, "pair {i}");
    }
    assert_eq!(
        book.forgot_through(),
        None,
        "{seconds} s of {TARGET_PER_SECOND}/s fit without shortening the window"
    );
    let held = book.len();
    assert_eq!(held as u64, seconds * TARGET_PER_SECOND);
    let counted = (LIVE.load(Ordering::Relaxed) - before) as usize;
    let per_seal = counted as f64 / held as f64;
    println!(
        "replay guard: {held} seals ({seconds} s of {TARGET_PER_SECOND}/s) in {counted} heap bytes: {per_seal:.1} bytes a seal; heap_bytes() estimates {}",
        book.heap_bytes()
    );
    assert!(per_seal <= 40.0, "{per_seal:.1} bytes a seal");
    let estimate = book.heap_bytes() as f64;
    assert!(
        (estimate / counted as f64 - 1.0).abs() < 0.1,
        "heap_bytes() {estimate} vs counted {counted}"
    );

    // One more second of pushes: the oldest second is forgotten, never refused as full.
    for i in 0..TARGET_PER_SECOND {
        let sealed = book.check(Seal {
            timestamp: now + 1,
            nonce: format!("next-{i}"),
            digest,
            kind: SealKind::Plaintext,
        });
        assert_eq!(sealed.check, SealCheck::Fresh);
    }
    assert_eq!(book.forgot_through(), Some(now - seconds));
    assert_eq!(book.len(), held);
}
