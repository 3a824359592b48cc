// Sequelize over node-postgres: sync, models, associations, transactions,
// the query interface.
'use strict';

const { Sequelize, DataTypes, Op } = require('sequelize');
const { env, eq, check, runAll } = require('./compat_common');

const sequelize = new Sequelize(env.database, env.user, env.password, {
  host: env.host, port: env.port, dialect: 'postgres', logging: false,
  dialectOptions: { ssl: false },
});

const Author = sequelize.define('Author', {
  name: { type: DataTypes.STRING, unique: true, allowNull: false },
  meta: DataTypes.JSONB,
  tags: DataTypes.ARRAY(DataTypes.STRING),
  mood: DataTypes.ENUM('sad', 'happy'),
  avatar: DataTypes.BLOB,
  born: DataTypes.DATE,
});
const Book = sequelize.define('Book', { title: DataTypes.STRING, pages: DataTypes.INTEGER });
Author.hasMany(Book);
Book.belongsTo(Author);

const tests = [
  ['authenticate', () => sequelize.authenticate()],
  ['sync', async () => {
    await sequelize.sync({ force: true });
    const tables = await sequelize.getQueryInterface().showAllTables();
    check(tables.includes('Authors') && tables.includes('Books'), `tables: ${tables}`);
  }],
  ['crud', async () => {
    const born = new Date(Date.UTC(1970, 0, 2));
    const a = await Author.create({ name: 'Ann', meta: { k: [1] }, tags: ['x', 'y'], mood: 'happy', avatar: Buffer.from([0, 255]), born });
    const got = await Author.findByPk(a.id);
    eq([got.meta, got.tags, got.mood, [...got.avatar], got.born.toISOString()],
      [{ k: [1] }, ['x', 'y'], 'happy', [0, 255], born.toISOString()], 'round trip');
    await Author.update({ mood: 'sad' }, { where: { id: a.id } });
    eq((await Author.findByPk(a.id)).mood, 'sad', 'update');
  }],
  ['associations', async () => {
    const a = await Author.create({ name: 'Bob' });
    await Book.bulkCreate(Array.from({ length: 10 }, (_, i) => ({ title: `b${i}`, pages: i, AuthorId: a.id })));
    const got = await Author.findOne({ where: { name: 'Bob' }, include: Book });
    eq(got.Books.length, 10, 'include');
    eq(await Book.count({ where: { pages: { [Op.gte]: 5 } } }), 5, 'Op.gte');
    eq(await Book.sum('pages'), 45, 'sum');
  }],
  ['transaction', async () => {
    await sequelize.transaction(async (t) => {
      await Author.create({ name: 'Cy' }, { transaction: t });
    });
    try {
      await sequelize.transaction(async (t) => {
        await Author.create({ name: 'Dee' }, { transaction: t });
        throw new Error('roll back');
      });
    } catch (e) { /* rolled back */ }
    eq(await Author.count({ where: { name: ['Cy', 'Dee'] } }), 1, 'committed only');
  }],
  ['unique_violation_recovery', async () => {
    let err;
    try { await Author.create({ name: 'Ann' }); } catch (e) { err = e; }
    eq(err && err.name, 'SequelizeUniqueConstraintError', 'unique violation');
    eq(await Author.count(), 3, 'still usable (Ann, Bob, Cy)');
  }],
  ['raw_queries', async () => {
    const [rows] = await sequelize.query('SELECT CAST(:a AS int) + CAST(:b AS int) AS v', { replacements: { a: 2, b: 3 } });
    eq(rows, [{ v: 5 }], 'replacements');
    const [rows2] = await sequelize.query('SELECT $1::int * 2 AS v', { bind: [21] });
    eq(rows2, [{ v: 42 }], 'bind');
  }],
  ['describe_table', async () => {
    const d = await sequelize.getQueryInterface().describeTable('Authors');
    check(d.name && d.meta && d.tags, `columns: ${Object.keys(d)}`);
    eq(d.mood.special, ['sad', 'happy'], 'enum values');
  }],
];

runAll(tests).then(() => sequelize.close()).then(() => process.exit(0));
