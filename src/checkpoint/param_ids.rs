//! Parameter identities across save and load. burn's optimizer keys its state by parameter
//! id, and safetensors files carry no ids; so the ids are recorded by module path in
//! `train_state.json` and given back to the parameters of a resumed model.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

use super::TrainState;

/// Gives `model`'s parameters the ids recorded in `state`, so that optimizer state saved
/// with those ids applies to them.
pub fn restore_param_ids<M: Module>(model: M, state: &TrainState) -> M {
    let mut mapper = IdRestorer {
        path: Vec::new(),
        ids: &state.param_ids,
    };
    model.map(&mut mapper)
}

pub(super) fn param_ids<M: Module>(model: &M) -> BTreeMap<String, u64> {
    let mut collector = IdCollector::default();
    model.visit(&mut collector);
    collector.ids
}

#[derive(Default)]
struct IdCollector {
    path: Vec<String>,
    ids: BTreeMap<String, u64>,
}

impl ModuleVisitor for IdCollector {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.ids.insert(self.path.join("."), param.id.val());
    }
}

struct IdRestorer<'a> {
    path: Vec<String>,
    ids: &'a BTreeMap<String, u64>,
}

impl ModuleMapper for IdRestorer<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(&id) = self.ids.get(&self.path.join(".")) {
            param.id = ParamId::from(id);
        }
        param
    }
}
