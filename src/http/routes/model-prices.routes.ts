import { z } from 'zod';
import { ModelName, ModelPrice, SetModelPriceRequest } from '../../contracts/index.js';
import { listModelPrices, setModelPrice } from '../../domain/billing/model-prices.service.js';
import { defineRoute } from '../route.js';

export const modelPriceRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/model-prices',
    auth: 'admin',
    summary: 'The model price table (USD per million tokens) used to cost calls',
    tags: ['Model prices'],
    response: { schema: z.object({ data: z.array(ModelPrice) }), description: 'every price' },
    handler: ({ ctx }) => listModelPrices(ctx),
  }),
  defineRoute({
    method: 'put',
    path: '/api/model-prices/{model_name}',
    auth: 'admin',
    summary: "Set a model's price; calls are costed with the price at the time they end",
    tags: ['Model prices'],
    params: z.strictObject({ model_name: ModelName }),
    body: SetModelPriceRequest,
    response: { schema: ModelPrice, description: 'the price' },
    handler: ({ ctx, params, body }) => setModelPrice(ctx, params.model_name, body),
  }),
];
