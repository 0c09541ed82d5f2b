import { index, integer, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';
import { teams } from './teams.js';

export const modelGroups = pgTable('model_groups', {
  name: text('group_name').primaryKey(),
  displayName: text('display_name'),
  description: text('description'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/** The models of a group; the lowest priority is tried first. */
export const modelGroupModels = pgTable(
  'model_group_models',
  {
    groupName: text('group_name')
      .notNull()
      .references(() => modelGroups.name, { onDelete: 'cascade', onUpdate: 'cascade' }),
    modelName: text('model_name').notNull(),
    priority: integer('priority').notNull(),
  },
  (t) => [primaryKey({ columns: [t.groupName, t.modelName] })],
);

/** Which model groups a team may use; position 0 is the team's default. */
export const teamModelGroups = pgTable(
  'team_model_groups',
  {
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    groupName: text('group_name')
      .notNull()
      .references(() => modelGroups.name),
    position: integer('position').notNull(),
  },
  (t) => [primaryKey({ columns: [t.teamId, t.groupName] }), index('team_model_groups_group_idx').on(t.groupName)],
);
