//! Host bindings of the `ember:plugin@0.1.1` worlds, generated from `wit/`.
//! Plugins built against 0.1.0 link to them too (semver-compatible imports).
//!
//! The three worlds import the same `host` and `http` interfaces; the
//! discoverer and notifier bindings reuse the exporter's modules for them so
//! that one implementation of each import serves every world.

pub mod exporter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "exporter",
        imports: {
            "ember:plugin/http.send": async,
            "ember:plugin/filesystem-stats": async,
        },
        exports: { default: async },
    });
}

pub mod discoverer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "discoverer",
        imports: { "ember:plugin/dns": async },
        exports: { default: async },
        with: {
            "ember:plugin/types": super::exporter::ember::plugin::types,
            "ember:plugin/host": super::exporter::ember::plugin::host,
            "ember:plugin/http": super::exporter::ember::plugin::http,
        },
    });
}

pub mod notifier {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "notifier",
        exports: { default: async },
        with: {
            "ember:plugin/types": super::exporter::ember::plugin::types,
            "ember:plugin/host": super::exporter::ember::plugin::host,
            "ember:plugin/http": super::exporter::ember::plugin::http,
        },
    });
}

pub use discoverer::ember::plugin::dns;
pub use exporter::ember::plugin::{filesystem_stats, host, http, types};
