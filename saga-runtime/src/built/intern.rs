//! Interning: the names and definitions built at run time live as long as the process, once each,
//! so that the executor can hold them as `&'static` like the ones `saga!` generates. A process
//! keeps one copy per distinct definition and one per distinct step instance name: with
//! instances numbered by position, a cart saga of one to ten items makes ten definitions.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

use crate::machine::StepTable;
use crate::step::{StepDef, StepDescription};
use crate::SagaOptions;

/// `name`, as a string that lives as long as the process (the same one for equal names).
pub(crate) fn intern(name: String) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        // Every change is one insert: a panic while it was held left it whole.
        .unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

/// What makes two built definitions the same: their types, name, options, groups, and each
/// step's description, functions and instance (functions by address, so that two different
/// functions of the same name are never taken for each other).
#[derive(PartialEq, Eq, Hash)]
struct Key {
    types: TypeId,
    name: &'static str,
    options: SagaOptions,
    groups: Vec<Range<usize>>,
    steps: Vec<StepKey>,
}

#[derive(PartialEq, Eq, Hash)]
struct StepKey {
    description: StepDescription,
    action: usize,
    compensate: Option<usize>,
    fallback: Option<usize>,
    instance: Option<usize>,
}

impl<C, D> From<&StepDef<C, D>> for StepKey {
    fn from(def: &StepDef<C, D>) -> Self {
        StepKey {
            description: def.description,
            action: def.action as usize,
            compensate: def.compensate.map(|f| f as usize),
            fallback: def.fallback.map(|f| f as usize),
            instance: def.instance,
        }
    }
}

/// The table of a built definition, shared with every equal definition built before.
pub(crate) fn table<C: Send + Sync + 'static, D: Send + Sync + 'static>(
    name: &'static str,
    options: SagaOptions,
    steps: Vec<StepDef<C, D>>,
    groups: Vec<Range<usize>>,
) -> &'static StepTable<C, D> {
    static TABLES: OnceLock<Mutex<HashMap<Key, &'static (dyn Any + Send + Sync)>>> =
        OnceLock::new();
    let key = Key {
        types: TypeId::of::<(C, D)>(),
        name,
        options,
        groups: groups.clone(),
        steps: steps.iter().map(StepKey::from).collect(),
    };
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(table) = tables.get(&key) {
        if let Some(table) = table.downcast_ref::<StepTable<C, D>>() {
            return table;
        }
    }
    let steps: &'static [StepDef<C, D>] = Box::leak(steps.into_boxed_slice());
    let metrics = crate::machine::Metrics::Built(Box::leak(Box::default()));
    let names: Vec<&'static str> = steps.iter().map(|def| def.name()).collect();
    let names = crate::output::StepNames::Listed(Box::leak(names.into_boxed_slice()));
    let table: &'static StepTable<C, D> = Box::leak(Box::new(StepTable {
        name,
        steps,
        options,
        groups: Box::leak(groups.into_boxed_slice()),
        metrics,
        names,
    }));
    tables.insert(key, table);
    table
}
