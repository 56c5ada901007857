//! A workflow's graph as SVG, drawn on the server: nodes in layers from the trigger down
//! (each node one layer below the deepest node that leads into it), coloured by their state,
//! with the edges between them and their branches.

use std::collections::HashMap;

use maud::{Markup, html};

use crate::graph::WorkflowDefinition;

const WIDTH: usize = 160;
const HEIGHT: usize = 46;
const GAP_X: usize = 24;
const GAP_Y: usize = 54;
const MARGIN: usize = 8;

/// Where each node goes: its layer, and its place in that layer.
fn layout(definition: &WorkflowDefinition) -> Vec<(usize, usize)> {
    let index: HashMap<&str, usize> = definition
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.id.as_str(), i))
        .collect();
    let edges: Vec<(usize, usize)> = definition
        .edges
        .iter()
        .filter_map(|edge| {
            Some((
                *index.get(edge.from.as_str())?,
                *index.get(edge.to.as_str())?,
            ))
        })
        .collect();
    // Longest path from a root; a saved graph is acyclic, so this settles within as many
    // rounds as there are nodes (and the cap keeps anything else finite).
    let mut layer = vec![0usize; definition.nodes.len()];
    for _ in 0..definition.nodes.len() {
        let mut changed = false;
        for &(from, to) in &edges {
            if layer[to] < layer[from] + 1 {
                layer[to] = layer[from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut filled: HashMap<usize, usize> = HashMap::new();
    layer
        .iter()
        .map(|&l| {
            let slot = filled.entry(l).or_default();
            *slot += 1;
            (l, *slot - 1)
        })
        .collect()
}

/// The graph with each node's state (a CSS class such as `completed`, `failed`,
/// `waiting`; nodes with none are `idle`), and a title per node saying what it did.
pub(super) fn svg(
    definition: &WorkflowDefinition,
    states: &HashMap<String, (String, String)>,
) -> Markup {
    let places = layout(definition);
    let layers = places.iter().map(|p| p.0).max().map_or(0, |l| l + 1);
    let mut per_layer = vec![0usize; layers];
    for &(l, _) in &places {
        per_layer[l] += 1;
    }
    let widest = per_layer.iter().copied().max().unwrap_or(1);
    let width = MARGIN * 2 + widest * WIDTH + widest.saturating_sub(1) * GAP_X;
    let height = MARGIN * 2 + layers * HEIGHT + layers.saturating_sub(1) * GAP_Y;
    // Each layer is centred.
    let position = |node: usize| {
        let (l, slot) = places[node];
        let row_width = per_layer[l] * WIDTH + per_layer[l].saturating_sub(1) * GAP_X;
        let x = (width - row_width) / 2 + slot * (WIDTH + GAP_X);
        let y = MARGIN + l * (HEIGHT + GAP_Y);
        (x, y)
    };
    let index: HashMap<&str, usize> = definition
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.id.as_str(), i))
        .collect();
    html! {
        svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (width) " " (height)}
            width=(width) role="img" aria-label={"graph of " (definition.name)} {
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"
                    markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" {}
                }
            }
            @for edge in &definition.edges {
                @if let (Some(&from), Some(&to)) = (index.get(edge.from.as_str()), index.get(edge.to.as_str())) {
                    @let (x1, y1) = position(from);
                    @let (x2, y2) = position(to);
                    @let (x1, y1, x2, y2) = (x1 + WIDTH / 2, y1 + HEIGHT, x2 + WIDTH / 2, y2);
                    path class="edge" marker-end="url(#arrow)"
                        d={"M " (x1) " " (y1) " C " (x1) " " (y1 + GAP_Y / 2) ", " (x2) " " (y2 - GAP_Y / 2) ", " (x2) " " (y2)} {}
                    @if let Some(branch) = &edge.branch {
                        text class="branch" x=((x1 + x2) / 2 + 4) y=((y1 + y2) / 2) { (branch) }
                    }
                }
            }
            @for (i, node) in definition.nodes.iter().enumerate() {
                @let (x, y) = position(i);
                @let (state, title) = states.get(&node.id).cloned()
                    .unwrap_or_else(|| ("idle".to_owned(), "not run".to_owned()));
                g class={"node " (state)} data-node=(node.id) {
                    title { (node.id) ": " (title) }
                    rect x=(x) y=(y) width=(WIDTH) height=(HEIGHT) rx="6" {}
                    text class="id" x=(x + 10) y=(y + 19) { (truncate(&node.id, 20)) }
                    text class="type" x=(x + 10) y=(y + 36) { (truncate(&node.node_type, 14)) " · " (state) }
                }
            }
        }
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn definition() -> WorkflowDefinition {
        serde_json::from_value(json!({
            "name": "fan",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "noop"},
                {"id": "join", "type": "noop"}
            ],
            "edges": [
                {"from": "start", "to": "a"},
                {"from": "start", "to": "b", "branch": "yes"},
                {"from": "a", "to": "join"},
                {"from": "b", "to": "join"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn nodes_go_one_layer_below_their_deepest_source() {
        assert_eq!(layout(&definition()), vec![(0, 0), (1, 0), (1, 1), (2, 0)]);
    }

    #[test]
    fn the_svg_has_every_node_in_its_state_and_escapes_names() {
        let mut definition = definition();
        definition.nodes[1].id = "<b>a</b>".into();
        definition.edges[0].to = "<b>a</b>".into();
        definition.edges[2].from = "<b>a</b>".into();
        let states = HashMap::from([("join".to_owned(), ("failed".to_owned(), "x".to_owned()))]);
        let svg = svg(&definition, &states).into_string();
        assert_eq!(svg.matches("<rect").count(), 4);
        assert_eq!(svg.matches("class=\"edge\"").count(), 4);
        assert!(svg.contains("class=\"node failed\" data-node=\"join\""));
        assert!(svg.contains("&lt;b&gt;a&lt;/b&gt;") && !svg.contains("<b>"));
        assert!(svg.contains(">yes</text>"));
    }

    #[test]
    fn long_names_are_cut_on_a_character() {
        assert_eq!(truncate("ééééé", 3), "ééé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
