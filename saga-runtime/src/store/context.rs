//! A saga context as a store holds it: a live value in memory, or its serialized form.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::SagaContext;

/// A live context behind a type-erased pointer, serializable on demand.
trait LiveContext: Any + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn to_json(&self) -> serde_json::Result<Vec<u8>>;
}

impl<C: SagaContext> LiveContext for C {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

/// A committed saga context: the live value (cheap to hand to an in-memory store) or its JSON
/// (as a durable store reads it back).
#[derive(Clone)]
pub struct StoredContext(Repr);

#[derive(Clone)]
enum Repr {
    Live(Arc<dyn LiveContext>),
    Json(Arc<[u8]>),
}

impl StoredContext {
    /// Wraps a live context.
    pub fn live<C: SagaContext>(ctx: Arc<C>) -> Self {
        StoredContext(Repr::Live(ctx))
    }

    /// Wraps a serialized (JSON) context.
    pub fn json(bytes: impl Into<Arc<[u8]>>) -> Self {
        StoredContext(Repr::Json(bytes.into()))
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Result<Arc<[u8]>> {
        match &self.0 {
            Repr::Live(ctx) => ctx.to_json().map(Into::into),
            Repr::Json(bytes) => Ok(bytes.clone()),
        }
    }

    /// The context as `C`: the live value if it is one, else decoded from JSON.
    pub fn decode<C: SagaContext>(&self) -> Result<C, String> {
        match &self.0 {
            Repr::Live(ctx) => ctx
                .as_any()
                .downcast_ref::<C>()
                .cloned()
                .ok_or_else(|| format!("the context is not a `{}`", std::any::type_name::<C>())),
            Repr::Json(bytes) => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

impl fmt::Debug for StoredContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Live(_) => f.write_str("StoredContext(live)"),
            Repr::Json(bytes) => write!(f, "StoredContext({})", String::from_utf8_lossy(bytes)),
        }
    }
}
