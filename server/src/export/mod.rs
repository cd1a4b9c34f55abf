//! The export files (docs/exports.md): the rows an export is made of, the bytes on their way to the client, and one
//! writer per format. A writer reads rows a batch at a time from a bounded channel and writes bytes into another, so
//! memory holds a batch or two whatever the number of rows. Nothing here knows HTTP: the use cases
//! (`usecase::exports`) check, scope, feed and record an export, and the adapters only name the file.
//!
//! # Layout
//! - `columns`: the columns of the insight export and of the roll-up table, and a record or a cell as a `Row`.
//! - `csv`, `geojson`, `gpkg`, `xlsx`: one writer each, all taking the same `Rows` and `ByteSink`.

pub mod columns;
pub mod csv;
pub mod geojson;
pub mod gpkg;
pub mod xlsx;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

pub use columns::{Column, Kind, Row, Value};

/// How much a writer gathers before handing bytes on: a chunk of the response.
const CHUNK_BYTES: usize = 64 * 1024;

/// How many chunks may wait for a slow client before the writer waits too (at most about 1 MiB).
pub const CHUNKS_IN_FLIGHT: usize = 16;

/// The file formats of the insight export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsightFormat {
    /// UTF-8 CSV, with a byte-order mark when `bom` (which Excel reads as "this is UTF-8").
    Csv { bom: bool },
    /// RFC 7946 GeoJSON: a `FeatureCollection` of points.
    GeoJson,
    /// OGC GeoPackage: a SQLite file with one point layer.
    GeoPackage,
    /// Office Open XML spreadsheet, one sheet.
    Xlsx,
}

impl InsightFormat {
    /// The name the audit trail records, and the file name's extension.
    #[must_use]
    pub fn extension(self) -> &'static str {
        match self {
            InsightFormat::Csv { .. } => "csv",
            InsightFormat::GeoJson => "geojson",
            InsightFormat::GeoPackage => "gpkg",
            InsightFormat::Xlsx => "xlsx",
        }
    }
}

/// Why an export stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum Cut {
    /// The client stopped reading (closed the connection): nobody is left to tell.
    #[error("the client stopped reading")]
    ClientGone,
    /// Reading the rows or writing the file failed; the detail is for the log.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The rows of an export, a batch at a time, counted as they are handed to the writer.
pub struct Rows {
    batches: BoxStream<'static, anyhow::Result<Vec<Row>>>,
    counted: Arc<AtomicU64>,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Rows").field("counted", &self.counted).finish_non_exhaustive()
    }
}

impl Rows {
    /// The rows of the batches `receiver` gets from `producer` (a task reading the store), each item made a row by
    /// `row_of` (or left out, when it gives `None`); and the count of rows handed out so far, which outlives the
    /// writer. The rows end only where the producer says it finished: if it failed or panicked, even after its last
    /// batch, the rows end in an error, so a cut-short read never passes for a whole one.
    pub fn new<T: Send + 'static>(
        receiver: mpsc::Receiver<anyhow::Result<Vec<T>>>,
        producer: tokio::task::JoinHandle<anyhow::Result<()>>,
        row_of: impl Fn(T) -> Option<Row> + Send + 'static,
    ) -> (Rows, Arc<AtomicU64>) {
        let batches = futures_util::stream::unfold(Some((receiver, producer)), |state| async move {
            let (mut receiver, producer) = state?;
            match receiver.recv().await {
                Some(batch) => Some((batch, Some((receiver, producer)))),
                None => match producer.await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some((Err(error), None)),
                    Err(stopped) => Some((Err(anyhow::anyhow!("the export's read stopped: {stopped}")), None)),
                },
            }
        })
        .map(move |batch| batch.map(|items| items.into_iter().filter_map(&row_of).collect()))
        .boxed();
        let counted = Arc::new(AtomicU64::new(0));
        (Rows { batches, counted: Arc::clone(&counted) }, counted)
    }

    /// The next batch, `None` after the last.
    ///
    /// # Errors
    /// The read failed (the export must stop: what follows would be missing rows).
    pub async fn next(&mut self) -> Option<anyhow::Result<Vec<Row>>> {
        let batch = self.batches.next().await;
        if let Some(Ok(rows)) = &batch {
            self.counted.fetch_add(rows.len() as u64, Ordering::Relaxed);
        }
        batch
    }
}

/// The bytes of an export on their way to the client: gathered into chunks and sent through a bounded channel (the
/// writer waits while the client is slow). The last chunk is held back until `finish`, which the use case calls
/// only once the export is recorded: an export that cannot be recorded never arrives whole.
#[derive(Debug)]
pub struct ByteSink {
    sender: mpsc::Sender<std::io::Result<Vec<u8>>>,
    buffer: Vec<u8>,
    complete: Arc<AtomicBool>,
}

/// The receiving end of a `ByteSink`: the file's bytes, then either the end or, if the export was cut short for
/// any reason (a failed read, a failed write, a panic), an error, so that a client never takes a short file for a
/// whole one.
#[derive(Debug)]
pub struct Chunks {
    receiver: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    complete: Arc<AtomicBool>,
    /// What the export holds until its last chunk is taken or the chunks are dropped (`holding`).
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Chunks {
    /// The same chunks, holding `slot` until the download ends, whole or abandoned.
    #[must_use]
    pub fn holding(self, slot: tokio::sync::OwnedSemaphorePermit) -> Chunks {
        Chunks { _slot: Some(slot), ..self }
    }

    /// The chunks as a stream, ending in an error unless the export finished.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
        futures_util::stream::unfold(Some(self), |chunks| async move {
            let mut chunks = chunks?;
            match chunks.receiver.recv().await {
                Some(chunk) => Some((chunk, Some(chunks))),
                None if chunks.complete.load(Ordering::Acquire) => None,
                None => Some((Err(std::io::Error::other("the export was cut short")), None)),
            }
        })
    }
}

/// A sink and the chunks it sends.
#[must_use]
pub fn byte_channel() -> (ByteSink, Chunks) {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let complete = Arc::new(AtomicBool::new(false));
    let sink = ByteSink { sender, buffer: Vec::with_capacity(CHUNK_BYTES), complete: Arc::clone(&complete) };
    (sink, Chunks { receiver, complete, _slot: None })
}

impl ByteSink {
    /// Adds `bytes`, first sending what is gathered if a chunk's worth is.
    ///
    /// # Errors
    /// `ClientGone`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Cut> {
        if self.buffer.len() >= CHUNK_BYTES {
            let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
            self.sender.send(Ok(chunk)).await.map_err(|_| Cut::ClientGone)?;
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// `write`, from a thread outside the runtime (`tokio::task::spawn_blocking`).
    ///
    /// # Errors
    /// `ClientGone`.
    pub fn blocking_write(&mut self, bytes: &[u8]) -> Result<(), Cut> {
        if self.buffer.len() >= CHUNK_BYTES {
            let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
            self.sender.blocking_send(Ok(chunk)).map_err(|_| Cut::ClientGone)?;
        }
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    /// Whether the client has stopped reading.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends the last chunk: the file is whole.
    ///
    /// # Errors
    /// `ClientGone`.
    pub async fn finish(self) -> Result<(), Cut> {
        self.complete.store(true, Ordering::Release);
        if !self.buffer.is_empty() {
            self.sender.send(Ok(self.buffer)).await.map_err(|_| Cut::ClientGone)?;
        }
        Ok(())
    }
}

/// A `ByteSink` as `std::io::Write`, for writers that are not async (XLSX), run on a blocking thread.
pub struct BlockingWriter<'a>(pub &'a mut ByteSink);

impl std::io::Write for BlockingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_write(bytes)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, Cut::ClientGone))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(chunks: Chunks) -> (Vec<u8>, Option<String>) {
        let mut stream = Box::pin(chunks.into_stream());
        let (mut bytes, mut error) = (Vec::new(), None);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => bytes.extend(chunk),
                Err(cut) => error = Some(cut.to_string()),
            }
        }
        (bytes, error)
    }

    #[tokio::test]
    async fn a_finished_export_arrives_whole_and_an_unfinished_one_ends_in_an_error() {
        let (mut sink, chunks) = byte_channel();
        let reader = tokio::spawn(collect(chunks));
        let big = vec![b'x'; CHUNK_BYTES + 10];
        sink.write(&big).await.unwrap();
        sink.write(b"tail").await.unwrap();
        sink.finish().await.unwrap();
        let (bytes, error) = reader.await.unwrap();
        assert_eq!((bytes.len(), error), (CHUNK_BYTES + 14, None));

        let (mut sink, chunks) = byte_channel();
        let reader = tokio::spawn(collect(chunks));
        sink.write(&big).await.unwrap();
        sink.write(b"never sent").await.unwrap();
        drop(sink);
        let (bytes, error) = reader.await.unwrap();
        assert!(bytes.len() <= CHUNK_BYTES + 10, "the held chunk is not sent");
        assert_eq!(error.as_deref(), Some("the export was cut short"));
    }

    #[tokio::test]
    async fn rows_are_counted_as_they_are_handed_out() {
        let row_of = |n: i64| (n != 0).then(|| Row { values: vec![Value::Integer(n)], point: None });
        let (sender, receiver) = mpsc::channel(4);
        let producer = tokio::spawn(async move {
            sender.send(Ok(vec![1, 0, 2])).await?;
            sender.send(Ok(vec![3])).await?;
            Ok(())
        });
        let (mut rows, counted) = Rows::new(receiver, producer, row_of);
        let mut seen = Vec::new();
        while let Some(batch) = rows.next().await {
            seen.extend(batch.unwrap().into_iter().map(|row| row.values[0].clone()));
        }
        assert_eq!(seen, [Value::Integer(1), Value::Integer(2), Value::Integer(3)]);
        assert_eq!(counted.load(Ordering::Relaxed), 3);

        // A producer that fails after its last batch: the rows end in its error, not as if whole.
        let (sender, receiver) = mpsc::channel(4);
        let producer = tokio::spawn(async move {
            sender.send(Ok(vec![1])).await?;
            anyhow::bail!("the snapshot could not be closed")
        });
        let (mut rows, _) = Rows::new(receiver, producer, row_of);
        assert_eq!(rows.next().await.unwrap().unwrap().len(), 1);
        assert!(rows.next().await.unwrap().unwrap_err().to_string().contains("could not be closed"));
        assert!(rows.next().await.is_none());
    }
}
