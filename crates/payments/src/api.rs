//! The payments service's gRPC API.

use std::sync::Arc;

use chrono::{Datelike, Utc};
use contracts::grpc::payments::v1 as pb;
use tonic::{Request, Response, Status};

use crate::card::CardInput;
use crate::provider::PaymentProvider;

#[derive(Clone)]
pub struct PaymentsApi {
    pub provider: Arc<dyn PaymentProvider>,
}

#[tonic::async_trait]
impl pb::payments_server::Payments for PaymentsApi {
    async fn tokenize_card(
        &self,
        request: Request<pb::TokenizeCardRequest>,
    ) -> Result<Response<pb::TokenizedCard>, Status> {
        let input = request.into_inner();
        let today = Utc::now();
        let card = CardInput::parse(
            &input.card_number,
            input.exp_month,
            input.exp_year,
            &input.cvc,
            (today.year() as u32, today.month()),
        )?;
        let tokenized = self.provider.tokenize_card(card, &input.user_id).await?;
        tracing::info!(
            user_id = %input.user_id,
            provider = tokenized.provider,
            brand = %tokenized.brand,
            last4 = %tokenized.last4,
            "card tokenised"
        );
        Ok(Response::new(pb::TokenizedCard {
            provider: tokenized.provider.to_owned(),
            provider_token: tokenized.token,
            brand: tokenized.brand,
            last4: tokenized.last4,
            exp_month: tokenized.exp_month,
            exp_year: tokenized.exp_year,
        }))
    }
}
