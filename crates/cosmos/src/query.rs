//! The results of [`crate::BrokeredContainer::query_items`]: the SDK's pages, with every page's
//! session token remembered on the way through.
//!
//! Why wrap the SDK's iterator: a query's pages are responses like any other. Their tokens are
//! what this process has seen of the partition (merged into later reads, see
//! [`crate::local_tokens`]) and name the range that served the partition key (see
//! [`crate::range_ids`]). Returning the SDK's iterator as it is would drop both.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use azure_data_cosmos::feed::{FeedRange, QueryFeedPage, QueryPageIterator};
use futures_core::Stream;
use serde::de::DeserializeOwned;

use crate::generation::Generation;

/// What a page teaches, and where to put it: the generation the query was made in.
pub(crate) struct PageObserver {
    pub(crate) generation: Arc<Generation>,
    pub(crate) partition_key_json: Option<String>,
    pub(crate) bounds: Option<FeedRange>,
}

impl PageObserver {
    fn observe(&self, token: &str) {
        self.generation.local_tokens.observe(token);
        if let (Some(partition_key_json), Some(bounds)) = (&self.partition_key_json, &self.bounds) {
            self.generation
                .range_ids
                .learn(partition_key_json, bounds.clone(), token);
        }
    }
}

/// The pages of a query made through [`crate::BrokeredContainer`]. A [`Stream`] of
/// [`QueryFeedPage`]s, like the SDK's [`QueryPageIterator`].
pub struct BrokeredQueryPages<T: Send> {
    pages: Pin<Box<QueryPageIterator<T>>>,
    observer: PageObserver,
    /// The first page, fetched ahead by [`Self::fetch_first`]: `Some(None)` when the query
    /// had no page at all.
    first: Option<Option<QueryFeedPage<T>>>,
}

impl<T: Send + DeserializeOwned + 'static> BrokeredQueryPages<T> {
    pub(crate) fn new(pages: QueryPageIterator<T>, observer: PageObserver) -> Self {
        Self {
            pages: Box::pin(pages),
            observer,
            first: None,
        }
    }

    /// Fetches the first page now and keeps it for the stream; its error, if it failed (the
    /// stream is then over, as the SDK's would be).
    pub(crate) async fn fetch_first(&mut self) -> azure_data_cosmos::Result<()> {
        match std::future::poll_fn(|cx| self.poll_sdk(cx)).await {
            Some(Ok(page)) => self.first = Some(Some(page)),
            Some(Err(error)) => return Err(error),
            None => self.first = Some(None),
        }
        Ok(())
    }

    /// The SDK's next page, its token remembered.
    fn poll_sdk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<azure_data_cosmos::Result<QueryFeedPage<T>>>> {
        let polled = self.pages.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(page))) = &polled
            && let Some(token) = page.headers().session_token()
        {
            self.observer.observe(token.as_str());
        }
        polled
    }

    /// The SDK's page iterator, for what this wrapper does not expose (for example
    /// `to_continuation_token`). Pages read from it are not remembered.
    pub fn sdk_pages(&self) -> &QueryPageIterator<T> {
        &self.pages
    }
}

impl<T: Send + DeserializeOwned + 'static> Stream for BrokeredQueryPages<T> {
    type Item = azure_data_cosmos::Result<QueryFeedPage<T>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.first.take() {
            Some(Some(page)) => Poll::Ready(Some(Ok(page))),
            Some(None) => Poll::Ready(None),
            None => self.poll_sdk(cx),
        }
    }
}

/// The items of a query made through [`crate::BrokeredContainer`]. A [`Stream`] of items, like
/// the SDK's `QueryItemIterator`.
pub struct BrokeredQuery<T: Send> {
    pages: BrokeredQueryPages<T>,
    current: std::vec::IntoIter<T>,
}

// Neither type pins its fields (pages are boxed, items are moved out), so both move freely
// whatever `T` is.
impl<T: Send> Unpin for BrokeredQueryPages<T> {}
impl<T: Send> Unpin for BrokeredQuery<T> {}

impl<T: Send + DeserializeOwned + 'static> BrokeredQuery<T> {
    pub(crate) fn new(pages: BrokeredQueryPages<T>) -> Self {
        Self {
            pages,
            current: Vec::new().into_iter(),
        }
    }

    /// Page by page instead of item by item. Items of the current page not yet yielded are
    /// dropped, as with the SDK's `into_pages`: call it before consuming items.
    pub fn into_pages(self) -> BrokeredQueryPages<T> {
        self.pages
    }
}

impl<T: Send + DeserializeOwned + 'static> Stream for BrokeredQuery<T> {
    type Item = azure_data_cosmos::Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.current.next() {
                return Poll::Ready(Some(Ok(item)));
            }
            match Pin::new(&mut self.pages).poll_next(cx) {
                Poll::Ready(Some(Ok(page))) => self.current = page.into_items().into_iter(),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
