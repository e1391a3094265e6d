//! Service ids and the slots they name. A service is one slot; its [`ServiceId`] is the slot's
//! position plus the slot's generation, so an id that outlived its service (in a timer, a
//! waiter, a probe result or a datagram still in flight) names nothing once the slot is reused:
//! [`Slots::get`] answers `None` and the input is dropped, never applied to the newcomer.

use std::fmt;

/// A service of the supervisor, valid as long as the service stays in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ServiceId {
    index: u32,
    generation: u32,
}

impl ServiceId {
    /// The slot's position: small, stable while the service lives (an output colour).
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.index, self.generation)
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Values named by [`ServiceId`]s; a freed slot is reused with the next generation.
pub(crate) struct Slots<T> {
    slots: Vec<Slot<T>>,
    /// Freed positions, reused last-freed first.
    free: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    /// Stores the value `make` builds for its own id, in a freed slot if there is one.
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(ServiceId) -> T) -> ServiceId {
        if let Some(index) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            let id = ServiceId {
                index,
                generation: slot.generation,
            };
            slot.value = Some(make(id));
            return id;
        }
        // More than 2^32 services at once cannot be (each has a process); saturating keeps the
        // arithmetic checked all the same.
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        let id = ServiceId {
            index,
            generation: 0,
        };
        self.slots.push(Slot {
            generation: 0,
            value: Some(make(id)),
        });
        id
    }

    /// Frees `id`'s slot: the id (and every copy of it) names nothing from now on.
    pub(crate) fn remove(&mut self, id: ServiceId) -> Option<T> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation {
            return None;
        }
        let value = slot.value.take()?;
        // After 2^32 reuses of one slot an id would repeat: wrapping is the documented end of
        // a counter no reload loop reaches (one per second for 136 years).
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        Some(value)
    }

    /// The value `id` names, while it is there.
    pub(crate) fn get(&self, id: ServiceId) -> Option<&T> {
        let slot = self.slots.get(id.index())?;
        (slot.generation == id.generation)
            .then_some(slot.value.as_ref())
            .flatten()
    }

    /// The value `id` names, while it is there.
    pub(crate) fn get_mut(&mut self, id: ServiceId) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index())?;
        (slot.generation == id.generation)
            .then_some(slot.value.as_mut())
            .flatten()
    }

    /// Every id in use, by position.
    pub(crate) fn ids(&self) -> Vec<ServiceId> {
        self.iter().map(|(id, _)| id).collect()
    }

    /// Every value with its id, by position.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ServiceId, &T)> {
        self.slots.iter().zip(0u32..).filter_map(|(slot, index)| {
            let id = ServiceId {
                index,
                generation: slot.generation,
            };
            slot.value.as_ref().map(|value| (id, value))
        })
    }

    /// Every value, by position.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| slot.value.as_ref())
    }

    /// Every value, by position.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|slot| slot.value.as_mut())
    }

    /// Values in use.
    pub(crate) fn len(&self) -> usize {
        self.values().count()
    }

    /// Slots, used or free: what reuse keeps from growing.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_slot_is_reused_and_its_old_id_names_nothing() {
        let mut slots = Slots::default();
        let a = slots.insert_with(|_| "a");
        let b = slots.insert_with(|_| "b");
        assert_eq!(slots.remove(a), Some("a"));
        assert_eq!(slots.remove(a), None, "freed once");
        let c = slots.insert_with(|id| {
            assert_eq!(id.index(), a.index(), "the freed slot is reused");
            "c"
        });
        assert_ne!(a, c);
        assert_eq!(slots.get(a), None, "a stale id does not reach the newcomer");
        assert_eq!(slots.get_mut(a), None);
        assert_eq!(slots.remove(a), None);
        assert_eq!(slots.get(c), Some(&"c"));
        assert_eq!(slots.get(b), Some(&"b"));
        assert_eq!(slots.ids(), [c, b]);
        assert_eq!((slots.len(), slots.capacity()), (2, 2));
    }
}
