//! Full-text search over the products on sale, from an in-memory tantivy
//! index kept in step with the database.
//!
//! The index is rebuilt from the database at start and updated after every
//! change this process commits. A catch-up task re-reads recently changed
//! rows every few seconds, so a change another replica made reaches this
//! one's index too. Hits are served from an in-memory copy of the products
//! on sale, so a search touches no database.
//!
//! Matching, per word the shopper typed: the exact word ranks highest,
//! then a word within one edit (two for long words, a swap counts as one);
//! the last word also matches as a prefix, so results follow the typing.
//! Every word must match somewhere: in the name (weighted most), the SKU,
//! the category or the description.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tantivy::collector::{Count, FacetCollector, TopDocs};
use tantivy::query::{
    AutomatonWeight, BooleanQuery, BoostQuery, DfaWrapper, EnableScoring, FuzzyTermQuery, Occur,
    Query, TermQuery, Weight,
};
use tantivy::schema::{
    Facet, FacetOptions, Field, IndexRecordOption, STORED, STRING, Schema, TEXT, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

use crate::domain::Product;

#[derive(Debug, thiserror::Error)]
#[error("search index: {0}")]
pub struct SearchError(#[from] tantivy::TantivyError);

struct Fields {
    id: Field,
    name: Field,
    sku: Field,
    category_words: Field,
    description: Field,
    category: Field,
}

/// One hit: the product and how well it matched.
#[derive(Debug, Clone)]
pub struct Hit {
    pub product: Product,
    pub score: f32,
}

#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub hits: Vec<Hit>,
    /// Matching products per category, ignoring the category filter.
    pub facets: Vec<(String, u64)>,
    /// Matching products in the chosen category (or all).
    pub total: u64,
}

pub struct SearchIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    /// The products on sale, by id, as last indexed.
    on_sale: RwLock<HashMap<String, Product>>,
    /// The newest `updated_at` seen per product, archived ones included, so
    /// a stale copy never undoes a newer change.
    versions: Mutex<HashMap<String, i64>>,
}

/// The longest query accepted, in characters, and the most words used.
pub const MAX_QUERY_CHARS: usize = 200;
const MAX_QUERY_WORDS: usize = 8;

impl SearchIndex {
    pub fn new() -> Result<SearchIndex, SearchError> {
        let mut schema = Schema::builder();
        let fields = Fields {
            id: schema.add_text_field("id", STRING | STORED),
            name: schema.add_text_field("name", TEXT),
            sku: schema.add_text_field("sku", TEXT),
            category_words: schema.add_text_field("category_words", TEXT),
            description: schema.add_text_field("description", TEXT),
            category: schema.add_facet_field("category", FacetOptions::default()),
        };
        let index = Index::create_in_ram(schema.build());
        // One indexing thread with tantivy's minimum budget: the catalog is
        // small and changes rarely.
        let writer = index.writer_with_num_threads(1, 15_000_000)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            reader,
            writer: Mutex::new(writer),
            fields,
            on_sale: RwLock::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
        })
    }

    /// Brings these products' entries up to date (adding those on sale,
    /// dropping archived ones), in one commit. A product older than the
    /// copy already indexed is skipped, so replays are harmless.
    pub fn upsert(&self, products: &[Product]) -> Result<usize, SearchError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut on_sale = self.on_sale.write().unwrap_or_else(|e| e.into_inner());
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = 0;
        for product in products {
            let seen = versions.entry(product.id.clone()).or_insert(i64::MIN);
            if *seen >= product.updated_at {
                continue;
            }
            *seen = product.updated_at;
            if !product.active && !on_sale.contains_key(&product.id) {
                continue;
            }
            writer.delete_term(Term::from_field_text(self.fields.id, &product.id));
            if product.active {
                writer.add_document(doc!(
                    self.fields.id => product.id.as_str(),
                    self.fields.name => product.name.as_str(),
                    self.fields.sku => product.sku.as_str(),
                    self.fields.category_words => product.category.replace('-', " "),
                    self.fields.description => product.description.as_str(),
                    self.fields.category => Facet::from(&format!("/{}", product.category)),
                ))?;
                on_sale.insert(product.id.clone(), product.clone());
            } else {
                on_sale.remove(&product.id);
            }
            changed += 1;
        }
        if changed > 0 {
            writer.commit()?;
            self.reader.reload()?;
        }
        Ok(changed)
    }

    /// How many products are on sale in the index.
    pub fn len(&self) -> usize {
        self.on_sale.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The words of a query, lower-cased, as the index tokenises them.
    fn words(query: &str) -> Vec<String> {
        query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .take(MAX_QUERY_WORDS)
            .collect()
    }

    fn word_query(&self, word: &str, is_last: bool) -> Result<Box<dyn Query>, SearchError> {
        let weighted = [
            (self.fields.name, 3.0),
            (self.fields.sku, 2.0),
            (self.fields.category_words, 1.5),
            (self.fields.description, 1.0),
        ];
        let distance = match word.chars().count() {
            0..=3 => 0,
            4..=7 => 1,
            _ => 2,
        };
        // Building a Levenshtein automaton is most of a search's cost, and
        // it depends only on the word: build each once, share it across
        // the fields (and across the facet and hit passes).
        let any_field = Term::from_field_text(self.fields.name, word);
        let fuzzy = (distance > 0)
            .then(|| FuzzyTermQuery::new(any_field.clone(), distance, true).automaton())
            .transpose()?
            .map(Arc::new);
        let prefix = is_last
            .then(|| FuzzyTermQuery::new_prefix(any_field, 0, true).automaton())
            .transpose()?
            .map(Arc::new);
        let mut options: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, weight) in weighted {
            let term = Term::from_field_text(field, word);
            options.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                    weight * 2.0,
                )),
            ));
            if let Some(automaton) = &fuzzy {
                options.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(SharedAutomaton::new(field, automaton)),
                        weight * 0.5,
                    )),
                ));
            }
            if let Some(automaton) = &prefix {
                options.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(SharedAutomaton::new(field, automaton)),
                        weight,
                    )),
                ));
            }
        }
        Ok(Box::new(BooleanQuery::new(options)))
    }

    /// Searches the products on sale. `category` narrows the hits (not the
    /// facets); `limit` is at least 1.
    pub fn search(
        &self,
        query: &str,
        category: Option<&str>,
        limit: usize,
    ) -> Result<SearchResult, SearchError> {
        let words = Self::words(query);
        if words.is_empty() {
            return Ok(SearchResult::default());
        }
        let last = words.len() - 1;
        let matching = words
            .iter()
            .enumerate()
            .map(|(i, w)| Ok((Occur::Must, self.word_query(w, i == last)?)))
            .collect::<Result<Vec<(Occur, Box<dyn Query>)>, SearchError>>()?;
        let matching = BooleanQuery::new(matching);
        let searcher = self.reader.searcher();

        let mut facet_collector = FacetCollector::for_field("category");
        facet_collector.add_facet(Facet::root());
        let hits_collector = (TopDocs::with_limit(limit.max(1)).order_by_score(), Count);
        // Facets count every match; hits only those in the chosen category.
        // Without a category that is one pass over the index.
        let (facet_counts, (top, total)) = match category {
            None => {
                let (facets, top, total) = searcher.search(
                    &matching,
                    &(facet_collector, hits_collector.0, hits_collector.1),
                )?;
                (facets, (top, total))
            }
            Some(category) => {
                let facets = searcher.search(&matching, &facet_collector)?;
                let filtered = BooleanQuery::new(vec![
                    (Occur::Must, Box::new(matching) as Box<dyn Query>),
                    (
                        Occur::Must,
                        Box::new(TermQuery::new(
                            Term::from_facet(
                                self.fields.category,
                                &Facet::from(&format!("/{category}")),
                            ),
                            IndexRecordOption::Basic,
                        )),
                    ),
                ]);
                (facets, searcher.search(&filtered, &hits_collector)?)
            }
        };
        let mut facets: Vec<(String, u64)> = facet_counts
            .get(Facet::root())
            .map(|(facet, count)| (facet.to_path().join("/"), count))
            .collect();
        facets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let on_sale = self.on_sale.read().unwrap_or_else(|e| e.into_inner());
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let stored: TantivyDocument = searcher.doc(address)?;
            let Some(id) = stored.get_first(self.fields.id).and_then(|v| v.as_str()) else {
                continue;
            };
            if let Some(product) = on_sale.get(id) {
                hits.push(Hit {
                    product: product.clone(),
                    score,
                });
            }
        }
        Ok(SearchResult {
            hits,
            facets,
            total: total as u64,
        })
    }
}

/// Matches a field's terms with an automaton built elsewhere and shared, so
/// that one word's automaton serves every field it is looked for in.
#[derive(Clone)]
struct SharedAutomaton {
    field: Field,
    automaton: Arc<DfaWrapper>,
}

impl SharedAutomaton {
    fn new(field: Field, automaton: &Arc<DfaWrapper>) -> SharedAutomaton {
        SharedAutomaton {
            field,
            automaton: Arc::clone(automaton),
        }
    }
}

impl std::fmt::Debug for SharedAutomaton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAutomaton")
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl Query for SharedAutomaton {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<DfaWrapper>::new(
            self.field,
            Arc::clone(&self.automaton),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{new_product_id, parse_price};
    use contracts::values::Sku;

    fn product(sku: &str, name: &str, category: &str, description: &str) -> Product {
        Product {
            id: new_product_id(),
            sku: Sku::parse(sku).unwrap(),
            name: name.into(),
            description: description.into(),
            price: parse_price(1000, "EUR").unwrap(),
            image_url: String::new(),
            category: category.into(),
            active: true,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn names(result: &SearchResult) -> Vec<&str> {
        result
            .hits
            .iter()
            .map(|h| h.product.name.as_str())
            .collect()
    }

    fn demo() -> (SearchIndex, Vec<Product>) {
        let index = SearchIndex::new().unwrap();
        let products = vec![
            product(
                "MUG-01",
                "Ceramic Coffee Mug",
                "kitchen",
                "A stoneware mug for coffee.",
            ),
            product(
                "BEAN-ETH",
                "Ethiopian Coffee Beans",
                "coffee",
                "Light roast, floral.",
            ),
            product(
                "KETTLE-1",
                "Gooseneck Kettle",
                "kitchen",
                "Pour-over kettle.",
            ),
            product(
                "BOOK-RUST",
                "The Rust Book",
                "books",
                "Learn Rust, with coffee.",
            ),
        ];
        index.upsert(&products).unwrap();
        (index, products)
    }

    #[test]
    fn exact_words_rank_name_matches_first() {
        let (index, _) = demo();
        let result = index.search("coffee", None, 10).unwrap();
        assert_eq!(result.total, 3);
        assert!(names(&result)[..2].contains(&"Ceramic Coffee Mug"));
        assert!(names(&result)[..2].contains(&"Ethiopian Coffee Beans"));
        assert_eq!(names(&result)[2], "The Rust Book");
    }

    #[test]
    fn typos_and_prefixes_still_find_the_product() {
        let (index, _) = demo();
        assert_eq!(
            names(&index.search("kettel", None, 10).unwrap()),
            ["Gooseneck Kettle"]
        );
        assert_eq!(
            names(&index.search("gooseneck ket", None, 10).unwrap()),
            ["Gooseneck Kettle"]
        );
        assert_eq!(
            names(&index.search("ethi", None, 10).unwrap()),
            ["Ethiopian Coffee Beans"]
        );
    }

    #[test]
    fn facets_count_every_category_and_the_filter_narrows_hits() {
        let (index, _) = demo();
        let result = index.search("coffee", Some("kitchen"), 10).unwrap();
        assert_eq!(names(&result), ["Ceramic Coffee Mug"]);
        assert_eq!(result.total, 1);
        assert_eq!(
            result.facets,
            [
                ("books".to_owned(), 1),
                ("coffee".to_owned(), 1),
                ("kitchen".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn archived_and_changed_products_are_kept_in_step() {
        let (index, products) = demo();
        let mut kettle = products[2].clone();
        kettle.active = false;
        kettle.updated_at = 2;
        index.upsert(&[kettle]).unwrap();
        assert!(index.search("kettle", None, 10).unwrap().hits.is_empty());
        let mut mug = products[0].clone();
        mug.name = "Ceramic Tea Mug".into();
        mug.description = "For tea.".into();
        mug.updated_at = 2;
        index.upsert(&[mug.clone()]).unwrap();
        assert_eq!(
            names(&index.search("tea", None, 10).unwrap()),
            ["Ceramic Tea Mug"]
        );
        // A stale copy arriving late changes nothing.
        index.upsert(&[products[0].clone()]).unwrap();
        assert_eq!(
            names(&index.search("tea", None, 10).unwrap()),
            ["Ceramic Tea Mug"]
        );
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn ten_thousand_products_are_searchable() {
        let index = SearchIndex::new().unwrap();
        let products: Vec<Product> = (0..10_000)
            .map(|i| {
                product(
                    &format!("SKU-{i}"),
                    &format!("Widget number {i}"),
                    &format!("cat-{}", i % 20),
                    "A widget.",
                )
            })
            .collect();
        assert_eq!(index.upsert(&products).unwrap(), 10_000);
        let result = index.search("widget 4242", None, 5).unwrap();
        assert_eq!(names(&result)[0], "Widget number 4242");
        // Every hit is counted in exactly one category's facet.
        assert_eq!(result.facets.iter().map(|f| f.1).sum::<u64>(), result.total);
        let all = index.search("widget", None, 5).unwrap();
        assert_eq!(all.total, 10_000);
        assert_eq!(all.facets.len(), 20);
    }

    #[test]
    fn empty_or_symbol_only_queries_match_nothing() {
        let (index, _) = demo();
        assert!(index.search("  --  ", None, 10).unwrap().hits.is_empty());
    }
}
