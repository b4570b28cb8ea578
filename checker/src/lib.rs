//! kvraft's checker: stateright explores the real core (`model`) under faults and checks
//! `specs`' properties on every state.
//!
//! The model is hand-written (`system`) rather than built on stateright's `ActorModel`: states
//! are ordered `im` collections (cheap clones, canonical hashes), the network is explicit, the
//! linearizability history is recorded where operations are invoked and complete, and every
//! bound is a property of the state (`within_boundary`), so DFS explores the bounded space
//! completely.

#![forbid(unsafe_code)]

pub mod bugs;
pub mod properties;
pub mod run;
pub mod setup;
pub mod suite;
pub mod symmetry;
pub mod system;
pub mod walk;

pub use setup::{Delivery, Reductions, Setup};
pub use system::{Action, SysState, System};

use stateright::{Model, Property};

impl Model for System {
    type State = SysState;
    type Action = Action;

    fn init_states(&self) -> Vec<SysState> {
        vec![self.initial_state()]
    }

    fn actions(&self, state: &SysState, actions: &mut Vec<Action>) {
        System::actions(self, state, actions);
    }

    fn next_state(&self, state: &SysState, action: Action) -> Option<SysState> {
        System::next_state(self, state, action)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::for_setup(&self.setup)
    }

    fn within_boundary(&self, state: &SysState) -> bool {
        System::within_boundary(self, state)
    }

    fn format_action(&self, action: &Action) -> String {
        action.to_string()
    }

    fn format_step(&self, state: &SysState, action: Action) -> Option<String> {
        let mut trace = Some(String::new());
        self.apply(state, action, &mut trace)?;
        trace
    }
}
