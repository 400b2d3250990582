//! The messages' words: a subject, a plain-text body and an HTML body for
//! each kind, written from what the events said. No template engine: five
//! short messages read more clearly as code, and every value that reaches
//! the HTML goes through one escaping function.

use contracts::events::OrderLineV1;
use contracts::values::format_amount;
use kit::http::escape_html;
use serde_json::Value;

/// What a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Welcome,
    OrderConfirmed,
    PaymentFailed,
    OrderCancelled,
    RefundIssued,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Welcome,
        Kind::OrderConfirmed,
        Kind::PaymentFailed,
        Kind::OrderCancelled,
        Kind::RefundIssued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Welcome => "welcome",
            Kind::OrderConfirmed => "order_confirmed",
            Kind::PaymentFailed => "payment_failed",
            Kind::OrderCancelled => "order_cancelled",
            Kind::RefundIssued => "refund_issued",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// One line of an order, with the product's name where it is known.
#[derive(Debug, Clone)]
pub struct Line {
    pub sku: String,
    pub name: Option<String>,
    pub quantity: u32,
    pub unit_minor: i64,
    pub currency: String,
}

impl Line {
    pub fn from_event(line: &OrderLineV1, name: Option<String>) -> Line {
        Line {
            sku: line.sku.clone(),
            name,
            quantity: line.quantity,
            unit_minor: line.unit_price.amount_minor,
            currency: line.unit_price.currency.clone(),
        }
    }

    fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.sku),
            None => self.sku.clone(),
        }
    }

    fn subtotal(&self) -> String {
        format_amount(
            self.unit_minor.saturating_mul(i64::from(self.quantity)),
            &self.currency,
        )
    }
}

/// What a message is written from.
#[derive(Debug, Clone)]
pub struct Context {
    pub kind: Kind,
    pub display_name: String,
    /// Kart's public address: links point there.
    pub public_url: String,
    pub order_id: String,
    pub lines: Vec<Line>,
    /// The order's total, when the message is about an order.
    pub total: Option<(i64, String)>,
    /// What the event said (amount, reason, code).
    pub facts: Value,
}

/// A message, written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn amount_fact(facts: &Value, key: &str) -> Option<String> {
    let money = facts.get(key)?;
    Some(format_amount(
        money.get("amount_minor")?.as_i64()?,
        money.get("currency")?.as_str()?,
    ))
}

fn text_fact<'a>(facts: &'a Value, key: &str) -> &'a str {
    facts.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A payment failure as a shopper can act on it.
fn payment_advice(code: &str) -> &'static str {
    match code {
        "card_declined" => "Your bank declined the card. Try another card, or ask your bank why.",
        "insufficient_funds" => {
            "The card has insufficient funds. Try another card, or top the account up first."
        }
        "expired_card" => "The card has expired. Add a current card and order again.",
        "incorrect_cvc" => "The security code did not match. Check it and order again.",
        "checkout_expired" => {
            "The payment page timed out before it was paid. Order again when you are ready."
        }
        _ => "The payment did not go through. Try again, or use another card.",
    }
}

/// Writes the message `context` describes.
pub fn write(context: &Context) -> Written {
    let base = context.public_url.trim_end_matches('/');
    let order_url = format!("{base}/orders/{}", context.order_id);
    let greeting = if context.display_name.is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", context.display_name)
    };
    let facts = &context.facts;
    let (subject, paragraphs, show_order): (String, Vec<String>, bool) = match context.kind {
        Kind::Welcome => (
            "Welcome to Kart".to_owned(),
            vec![
                "Your account is ready. Save a card once, then check out in one step.".to_owned(),
                format!("Start shopping: {base}/"),
            ],
            false,
        ),
        Kind::OrderConfirmed => (
            format!("Order {} confirmed", context.order_id),
            vec![
                "Thank you: your payment went through and your order is confirmed. We will let you know when it ships.".to_owned(),
            ],
            true,
        ),
        Kind::PaymentFailed => (
            format!("Payment for order {} did not go through", context.order_id),
            vec![
                payment_advice(text_fact(facts, "code")).to_owned(),
                "Nothing was charged.".to_owned(),
            ],
            true,
        ),
        Kind::OrderCancelled => {
            let reason = text_fact(facts, "reason");
            let mut said = vec![format!("Your order {} is cancelled.", context.order_id)];
            if !reason.is_empty() {
                said.push(format!("Reason: {reason}."));
            }
            said.push("If you were charged, the refund follows in a separate message.".to_owned());
            (format!("Order {} cancelled", context.order_id), said, true)
        }
        Kind::RefundIssued => {
            let amount = amount_fact(facts, "amount").unwrap_or_else(|| "The amount".to_owned());
            (
                format!("Refund for order {}", context.order_id),
                vec![format!(
                    "{amount} is on its way back to your card. Banks usually take 5 to 10 days to show it."
                )],
                true,
            )
        }
    };

    let mut text = format!("{greeting}\n\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;color:#1a1a1a\">\
         <p>{}</p>",
        escape_html(&greeting)
    );
    for paragraph in &paragraphs {
        text.push_str(paragraph);
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>", escape_html(paragraph)));
    }
    if show_order && !context.lines.is_empty() {
        text.push_str(&format!("Order {}\n", context.order_id));
        html.push_str(&format!(
            "<table style=\"border-collapse:collapse\"><caption style=\"text-align:left\">Order {}</caption>\
             <thead><tr><th style=\"text-align:left\">Item</th><th>Qty</th><th style=\"text-align:right\">Price</th></tr></thead><tbody>",
            escape_html(&context.order_id)
        ));
        for line in &context.lines {
            text.push_str(&format!(
                "  {} x {}  {}\n",
                line.quantity,
                line.label(),
                line.subtotal()
            ));
            html.push_str(&format!(
                "<tr><td>{}</td><td style=\"text-align:center\">{}</td><td style=\"text-align:right\">{}</td></tr>",
                escape_html(&line.label()),
                line.quantity,
                escape_html(&line.subtotal())
            ));
        }
        html.push_str("</tbody>");
        if let Some((total, currency)) = &context.total {
            let total = format_amount(*total, currency);
            text.push_str(&format!("  Total  {total}\n"));
            html.push_str(&format!(
                "<tfoot><tr><th style=\"text-align:left\" colspan=\"2\">Total</th><th style=\"text-align:right\">{}</th></tr></tfoot>",
                escape_html(&total)
            ));
        }
        html.push_str("</table>");
        text.push('\n');
    }
    if show_order {
        text.push_str(&format!("See your order: {order_url}\n\n"));
        html.push_str(&format!(
            "<p><a href=\"{}\">See your order</a></p>",
            escape_html(&order_url)
        ));
    }
    text.push_str("Kart\n");
    html.push_str("<p>Kart</p></body></html>");
    Written {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_context(kind: Kind, facts: Value) -> Context {
        Context {
            kind,
            display_name: "Ada <script>".into(),
            public_url: "https://shop.example.com/".into(),
            order_id: "ord_1".into(),
            lines: vec![
                Line {
                    sku: "MUG-1".into(),
                    name: Some("Stoneware mug".into()),
                    quantity: 2,
                    unit_minor: 1250,
                    currency: "EUR".into(),
                },
                Line {
                    sku: "TEA-9".into(),
                    name: None,
                    quantity: 1,
                    unit_minor: 499,
                    currency: "EUR".into(),
                },
            ],
            total: Some((2999, "EUR".into())),
            facts,
        }
    }

    #[test]
    fn a_confirmation_lists_the_lines_the_total_and_a_link() {
        let written = write(&order_context(Kind::OrderConfirmed, json!({})));
        assert_eq!(written.subject, "Order ord_1 confirmed");
        for body in [&written.text, &written.html] {
            assert!(body.contains("Stoneware mug (MUG-1)"), "{body}");
            assert!(body.contains("25.00 EUR"), "{body}");
            assert!(body.contains("TEA-9"), "{body}");
            assert!(body.contains("29.99 EUR"), "{body}");
            assert!(
                body.contains("https://shop.example.com/orders/ord_1"),
                "{body}"
            );
        }
    }

    #[test]
    fn names_are_escaped_in_html_only() {
        let written = write(&order_context(Kind::OrderConfirmed, json!({})));
        assert!(written.text.contains("Hello Ada <script>,"));
        assert!(written.html.contains("Hello Ada &lt;script&gt;,"));
        assert!(!written.html.contains("<script>"));
    }

    #[test]
    fn each_kind_says_what_happened() {
        let failed = write(&order_context(
            Kind::PaymentFailed,
            json!({"code": "insufficient_funds"}),
        ));
        assert!(
            failed.text.contains("insufficient funds"),
            "{}",
            failed.text
        );
        let refund = write(&order_context(
            Kind::RefundIssued,
            json!({"amount": {"amount_minor": 1250, "currency": "EUR"}}),
        ));
        assert!(refund.text.contains("12.50 EUR is on its way back"));
        let cancelled = write(&order_context(
            Kind::OrderCancelled,
            json!({"reason": "changed my mind"}),
        ));
        assert!(cancelled.text.contains("Reason: changed my mind."));
        let mut welcome = order_context(Kind::Welcome, json!({}));
        welcome.lines.clear();
        let welcome = write(&welcome);
        assert_eq!(welcome.subject, "Welcome to Kart");
        assert!(!welcome.text.contains("ord_1"));
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("spam"), None);
    }
}
