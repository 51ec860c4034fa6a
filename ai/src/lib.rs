//! On-device inference: the ONNX Runtime library (loaded at run time, `load-dynamic`), a
//! detector per model on the best execution provider that works for it, and the detectors'
//! pre- and post-processing.
//!
//! Code map: [`runtime`] finds and loads the library and reports its providers; [`session`]
//! opens a model as a [`session::Detector`] (provider tried TensorRT → CUDA → CPU, checked
//! with a dry run); [`detect`] is the letterbox and suppression every detector shares;
//! [`yolo`] and [`centerface`] decode their models' outputs; [`track`] follows detections
//! over time (ids, zones, minimum duration) and says when an object is an event; [`worker`]
//! runs a detector in a process of its own (the node starts its own executable for it).
//!
//! Invariant: this crate knows nothing of streams, the node or the network; it takes frames
//! and returns detections in the frame's pixels. A model that cannot work is refused when it
//! is opened, with the reason.

pub mod centerface;
pub mod detect;
pub mod registry;
pub mod runtime;
pub mod session;
pub mod track;
pub mod worker;
pub mod yolo;
