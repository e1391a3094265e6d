//! `clone3` with `CLONE_VM | CLONE_VFORK`, the way `posix_spawn` starts a program: the child
//! runs on a stack of its own inside drover's address space until it `exec`s, and drover's
//! calling thread waits for that moment. Nothing is copied: a plain `clone3` copies the page
//! tables of drover's whole address space, and the child's `exec` then tears that copy down,
//! about a third of a restart's latency on the 2-core machine (docs/benchmarks.md).
//!
//! The price is that the child shares drover's memory. It must run only code that writes
//! nothing of drover's but its own stack, the result slot it is given and the calling
//! thread's `errno` (its TLS is the caller's; nothing reads it after the call), and no signal
//! handler of drover's may run in it (one would act on drover's memory). The caller blocks
//! every signal around the call, and the child puts every disposition back to its default or
//! to ignored before it unblocks any (see `exec_child`). A child that changes its user is not
//! started this way: the kernel would clear the dumpable flag of the shared memory, and the
//! user could stop the child, and with it drover's thread, before its `exec`.
//!
//! The calling thread waits while the child runs up to its `exec`, a working directory on a
//! hung network mount included; drover calls it on its spawner thread, never the runtime's.
//!
//! Only on x86_64, where the trampoline below is written and tested; elsewhere the caller
//! keeps the copying `clone3`.

use std::ffi::c_void;
use std::io;

/// The child's stack: enough for `exec_child` (a few hundred bytes of frames) many times
/// over, with a guard page below it, so that an overflow kills the child instead of writing
/// into drover's memory.
const STACK_SIZE: usize = 64 * 1024;
const GUARD_SIZE: usize = 4096;

/// A private anonymous mapping, the guard page at its low end, unmapped on drop.
pub(crate) struct ChildStack {
    base: *mut c_void,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// only its address.
unsafe impl Send for ChildStack {}

/// The one stack that every spawn reuses, in turn (each unmapping would make the kernel flush
/// the TLBs of drover's other threads).
static SHARED_STACK: std::sync::Mutex<Option<ChildStack>> = std::sync::Mutex::new(None);

impl ChildStack {
    /// The shared stack, mapped on first use, held until the guard is dropped; `None` (the
    /// guard holding no stack) when it cannot be mapped.
    pub(crate) fn shared() -> StackGuard {
        let mut guard = SHARED_STACK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            *guard = ChildStack::new().ok();
        }
        StackGuard(guard)
    }

    fn new() -> io::Result<ChildStack> {
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; nothing else
        // refers to it. The low page is then made inaccessible, inside the mapping we own.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE + GUARD_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let stack = ChildStack { base };
            if libc::mprotect(base, GUARD_SIZE, libc::PROT_NONE) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(stack)
        }
    }

    /// The lowest usable address and the usable size, as `clone_args.stack` and `stack_size`
    /// take them (the kernel starts the child at their sum, which is 16-byte aligned).
    pub(crate) fn range(&self) -> (u64, u64) {
        let low = (self.base as usize).wrapping_add(GUARD_SIZE);
        (low as u64, STACK_SIZE as u64)
    }
}

/// The shared stack, borrowed for one spawn.
pub(crate) struct StackGuard(std::sync::MutexGuard<'static, Option<ChildStack>>);

impl StackGuard {
    pub(crate) fn as_mut(&mut self) -> Option<&mut ChildStack> {
        self.0.as_mut()
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this size and is unmapped once. The
        // children that ran on it have `exec`ed or exited by now (CLONE_VFORK returns only
        // then), so nothing runs on it any more.
        unsafe {
            libc::munmap(self.base, STACK_SIZE + GUARD_SIZE);
        }
    }
}

/// `clone3(args, size)`, the child calling `entry(context)` on the stack that `args` gives it;
/// `entry` never returns. Returns the syscall's result in the parent: the child's pid, or
/// `-errno`.
///
/// # Safety
/// `args` must ask for a stack (`stack`, `stack_size`) that stays mapped until the child has
/// `exec`ed or exited, which `CLONE_VFORK` guarantees when the stack outlives this call; and
/// `entry` must be safe to run in the child with `context` (see the module's docs).
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn clone3_calling(
    args: *mut crate::CloneArgs,
    size: usize,
    entry: unsafe extern "C" fn(*mut c_void) -> !,
    context: *mut c_void,
) -> libc::c_long {
    let result: libc::c_long;
    // SAFETY: the syscall instruction clobbers rcx and r11 and returns in rax, as declared.
    // In the parent nothing else changes, and the asm may read and write memory (no `nomem`):
    // the child writes its result through `context` before the parent resumes. In the child
    // (rax == 0) the kernel has set rsp to the top of the new stack; the code aligns it as
    // the C ABI wants at a call and calls `entry`, which never returns (`ud2` if it did), so
    // no Rust code of the parent runs on that stack or with those registers.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "and rsp, -16",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => result,
            in("rdi") args,
            in("rsi") size,
            in("r12") context,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}
