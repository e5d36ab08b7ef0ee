//! One scripted driver for the engine's tests: the memory driver with hooks.
//!
//! Faults a real store cannot be made to produce on cue (a server that is down, a write held
//! up, a conflicting write from another process, a read held on its way back) are scripted by
//! a [`Hooks`] value: each hook gets the memory driver and the call's arguments and by default
//! passes the call through.

// Each test binary uses the hooks it needs.
#![allow(dead_code)]

use std::fmt::Debug;
use std::ops::{ControlFlow, Deref};
use std::sync::Arc;
use std::time::Duration;

use cgi_session_core::{
    async_trait, Driver, DriverError, ListedSession, Loaded, LockAttempt, LockToken, MemoryDriver,
    SessionId, StoreMode, StoreOutcome,
};

/// What a scripted driver does on the calls it intercepts.
#[async_trait]
pub trait Hooks: Debug + Send + Sync + 'static {
    /// The driver's name (in its errors).
    const NAME: &'static str;

    /// A `load`.
    async fn load(
        &self,
        memory: &MemoryDriver,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        memory.load(id, touch).await
    }

    /// A `store`.
    async fn store(
        &self,
        memory: &MemoryDriver,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        memory.store(id, data, mode, ttl).await
    }

    /// A `try_lock`.
    async fn try_lock(
        &self,
        memory: &MemoryDriver,
        id: &SessionId,
        lease: Duration,
    ) -> Result<LockAttempt, DriverError> {
        memory.try_lock(id, lease).await
    }
}

/// The memory driver with `H`'s hooks; derefs to the hooks (for their counters).
#[derive(Debug)]
pub struct Scripted<H> {
    /// The store underneath.
    pub memory: MemoryDriver,
    /// The script.
    pub hooks: H,
}

impl<H: Hooks> Scripted<H> {
    /// `hooks` over a fresh memory driver.
    pub fn new(hooks: H) -> Arc<Self> {
        Self::over(MemoryDriver::new(), hooks)
    }

    /// `hooks` over `memory` (a clone shares its sessions).
    pub fn over(memory: MemoryDriver, hooks: H) -> Arc<Self> {
        Arc::new(Self { memory, hooks })
    }
}

impl<H> Deref for Scripted<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.hooks
    }
}

#[async_trait]
impl<H: Hooks> Driver for Scripted<H> {
    fn name(&self) -> &'static str {
        H::NAME
    }
    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        self.hooks.load(&self.memory, id, touch).await
    }
    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        self.hooks.store(&self.memory, id, data, mode, ttl).await
    }
    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError> {
        self.memory.remove(id).await
    }
    async fn touch(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError> {
        self.memory.touch(id, ttl).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        self.hooks.try_lock(&self.memory, id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        self.memory.unlock(id, token).await
    }
    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        self.memory.list(visit).await
    }
}
